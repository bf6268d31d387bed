"""A connection point's caps (uplink, downlink, audio-only), set by a technician and applied to its participants."""
