"""Models: the paper's networks and the *unit layers* the analyses perturb.

- :mod:`~singledir.models.nets`    the MLP and ConvNet of appendix A.2 (MNIST, CIFAR-10);
- :mod:`~singledir.models.resnet`  torchvision classification models (ResNet-50 for ImageNet) with
  analysable unit layers.
"""
