"""Building blocks: attention, feed-forward/GLU, spectral filter, selective scan and Mamba."""
