"""The one narrow adjustment the plugin makes to fairseq: ``--ddp-backend c10d`` on CPU.

fairseq 0.12 builds ``DistributedDataParallel(module, device_ids=[args.device_id], ...)`` for c10d, which
PyTorch rejects for a module on the CPU (device_ids must be None there). The class fairseq looks up is
replaced by a subclass that drops device_ids/output_device for CPU modules only; GPU modules are untouched.
"""
import fairseq.models.distributed_fairseq_model as dfm
from torch.nn.parallel import DistributedDataParallel


class CpuCompatibleDDP(DistributedDataParallel):
    def __init__(self, module, *args, device_ids=None, output_device=None, **kwargs):
        if all(p.device.type == "cpu" for p in module.parameters()):
            device_ids = output_device = None
        super().__init__(module, *args, device_ids=device_ids, output_device=output_device, **kwargs)


if dfm.DistributedDataParallel is DistributedDataParallel:
    dfm.DistributedDataParallel = CpuCompatibleDDP
