from torchtune.modules.low_precision._nf4 import dequantize, is_nf4, linear_nf4, to_nf4
from torchtune.modules.low_precision.nf4_linear import FrozenNF4Linear

__all__ = ["FrozenNF4Linear", "dequantize", "is_nf4", "linear_nf4", "to_nf4"]
