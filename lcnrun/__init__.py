"""lcnrun: experiments on the training geometry of deep linear and linear convolutional networks."""

__version__ = "0.1.0"
