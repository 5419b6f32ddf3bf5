"""The errors and warnings of dataset readers."""


class DatasetError(ValueError):
    """A dataset file is invalid; the message names the file, the record and the field."""


class DatasetWarning(UserWarning):
    """Summary of annotations a reader dropped or images it left out."""
