from .fuller_net import FullerNet

__all__ = ['FullerNet']
