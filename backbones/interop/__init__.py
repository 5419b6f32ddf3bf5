"""A resdet backbone inside other libraries: one module per library (`torchvision`, `timm`,
`detectron2`, `mmdet`). Importing this package imports none of them."""
