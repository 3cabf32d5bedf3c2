"""benchmark_kernels.py times the deploy kernels on a model's own shapes."""
import os.path as osp
import re

import pytest

from mmmobilemamba.ops.depthwise_conv import depthwise_missing
from ..helpers import REPO, run_tool

TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'benchmark_kernels.py')
T2 = osp.join(REPO, 'configs', 'mobilemamba', 'mobilemamba-t2_8xb128_in1k.py')


@pytest.mark.skipif(depthwise_missing() is not None,
                    reason='the compiled depthwise convolution is not built')
def test_tables_cover_the_model_shapes():
    out = run_tool(TOOL, T2, '--shape', '64', '96', '--iters', '2',
                   '--threads', '1')
    dw = re.findall(r'^\| 1x(\d+)x(\d+)x(\d+) \| (\d)x\d, (\d) \| (\d+) \| '
                    r'([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (yes|no) \|$', out,
                    re.M)
    pw = re.findall(r'^\| (\d+) x (\d+) -> (\d+) \| ([\d.]+) \| ([\d.]+) \| '
                    r'([\d.]+) \|$', out, re.M)
    assert len(dw) >= 10 and len(pw) >= 10, out
    # the first depthwise conv runs on the stride-16 map of a 64x96 input
    assert (dw[0][1], dw[0][2]) == ('4', '6'), dw[0]
    for row in dw:
        assert float(row[6]) > 0 and float(row[7]) > 0
        small = int(row[5]) <= 524288 and int(row[3]) <= 5
        assert (row[9] == 'yes') == small
    assert re.search(r'1x1, one of each shape: addmm \d+ us, packed \d+ us',
                     out)


def test_rejects_bad_arguments():
    with pytest.raises(AssertionError, match='--batch and --iters'):
        run_tool(TOOL, T2, '--iters', '0')
