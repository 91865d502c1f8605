"""For development and the local demo: the traffic simulator, the embedded Tansu broker and
``cxpulse up``. Production never imports these."""
