"""The error a command gets when the model it asked for does not exist; light to import, so that commands which only
look a model up (`card`) need not load Keras."""


class ModelNotFound(LookupError):
    """No such run, logged model, registered model, version or alias; the message says what exists instead."""
