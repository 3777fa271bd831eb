"""Synthetic world in exact nuScenes format: FULLER's embedded demo dataset."""

from .generator import DemoConfig, generate_demo_dataset

__all__ = ['DemoConfig', 'generate_demo_dataset']
