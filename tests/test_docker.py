import os.path as osp
import re

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_dockerfile_uses_pinned_requirements_and_cuda_archs():
    text = open(osp.join(ROOT, 'docker', 'Dockerfile')).read()
    instructions = [ln.split()[0] for ln in text.splitlines() if ln.strip() and not ln.startswith('#')
                    and not ln.startswith(' ')]
    assert instructions[0] == 'FROM' and set(instructions) <= {'FROM', 'ENV', 'RUN', 'WORKDIR', 'COPY'}
    assert re.search(r'FROM nvidia/cuda:12\.', text)
    archs = re.search(r'TORCH_CUDA_ARCH_LIST="([^"]+)"', text).group(1).split()
    assert {'8.0', '8.6', '9.0'} <= set(archs)
    assert 'COPY requirements/ requirements/' in text and 'tools/setup_env.sh' in text
    setup = open(osp.join(ROOT, 'tools', 'setup_env.sh')).read()
    for req in ('build.txt', 'torch.txt', 'mmcv.txt', 'runtime.txt', 'mmdet3d.txt'):
        assert f'$REQ/{req}' in setup, req
