"""Synthetic world in exact nuScenes format: FULLER's embedded demo dataset."""

from .generator import MANIFEST, WORLD_VERSION, DemoConfig, demo_data_problem, demo_world_version, generate_demo_dataset

__all__ = ['DemoConfig', 'MANIFEST', 'WORLD_VERSION', 'demo_data_problem', 'demo_world_version',
           'generate_demo_dataset']
