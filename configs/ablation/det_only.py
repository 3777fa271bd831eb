# Single-task detection: the map head removed (the map metric reports nothing).
_base_ = ['./_study.py']
model = dict(heads=dict(map=None))
