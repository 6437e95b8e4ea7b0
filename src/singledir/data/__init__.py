"""Data: every dataset behind one interface, and the labels the paper corrupts.

- :mod:`~singledir.data.sources`     in-memory sources (torchvision MNIST/CIFAR-10, scikit-learn digits,
  npz files), validated and stored as one prepared npz per family;
- :mod:`~singledir.data.check`       every check a dataset gets before any cost estimate or training
  (the npz archive's headers, inputs outside results/, every image of a folder decoded);
- :mod:`~singledir.data.corruption`  partially shuffled training labels (paper section 2.1);
- :mod:`~singledir.data.imagenet`    ImageNet (or any image folder) kept on disk: the index of every
  image, the class-balanced analysis subset, the offline stand-in;
- :mod:`~singledir.data.access`      the data the per-model analyses read, for every family (npz or
  image index behind one interface).
"""
