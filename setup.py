from setuptools import find_packages, setup

setup(
    name='fuller',
    version='0.1.0',
    description='FULLER: unified multi-modality multi-task 3D perception with multi-level '
    'gradient calibration',
    packages=find_packages(include=['fuller', 'fuller.*']),
    python_requires='>=3.10',
    include_package_data=True,
)
