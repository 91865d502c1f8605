"""CX initiatives: declaring them, reading the declarations, and the ROI they earn.

Split by layer, in the order a declaration travels: ``model`` (the ``Initiative``
record and its JSON), ``cli`` (``cxpulse initiative``: publish it on the compacted
topic), ``reader`` (every worker reads the topic back), ``components`` (each arm's
sessions, orders and revenue summed at scrape time) and ``rules`` (the ROI
recording rules in PromQL, ``ROI_RULES``).
"""
