"""CX initiatives: declaring them, reading the declarations, and the ROI they earn."""
