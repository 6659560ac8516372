"""SAN self-attention ops (CuPy CUDA kernels with a pure-PyTorch CPU path).

``cupy`` is imported only inside the CUDA path, never at import time.
"""
