"""Edge runtime of the ALPR product.

Everything under ``core/`` except ``core/keras/`` must run with numpy, OpenCV and a TFLite
interpreter only: it never imports TensorFlow (``tests/test_edge_runtime.py`` enforces it) and
stays compatible with Python 3.8 (checked with vermin).
"""
