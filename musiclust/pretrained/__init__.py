"""Pretrained audio networks ported to plain PyTorch (weights read at run time, no TensorFlow).

``musicnn``: MusiCNN (Pons & Serra, 2019), read from the ``musicnn`` wheel's TF-1 checkpoints by
``tf_checkpoint``. Import the submodules directly; this package imports nothing heavy.
"""
