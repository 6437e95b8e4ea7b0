"""Models: the paper's networks and the *unit layers* the analyses perturb.

- :mod:`~singledir.models.api`     the one model API of every family: build_model, save_trained,
  load_trained (one model.pt schema), unit_layers, unit_weights;
- :mod:`~singledir.models.nets`    the MLP and ConvNet of appendix A.2 (MNIST, CIFAR-10);
- :mod:`~singledir.models.resnet`  torchvision classification models (ResNet-50 for ImageNet) with
  analysable unit layers;
- :mod:`~singledir.models.probe`   one eval-mode forward of one example with hooks (sizes, call counts);
- :mod:`~singledir.models.activations` unperturbed layer activations over many examples (the one
  collector) and their moments.
"""
