"""Check your own port: two native models of any two frameworks compared layer by layer.

``port_check(model_a, model_b, x_nchw)`` takes a torch ``nn.Module``, a Flax ``(module, variables)``
pair (optionally ``(module, variables, apply_kwargs)``), a Keras model or a Gluon block on each
side, A the reference. It runs both once on ``x_nchw`` (NHWC where the framework wants it),
capturing every leaf layer with the framework's own mechanism; pairs A's tensor layers with
B's (``name_map`` regex pairs, or automatically by execution order and shape: ``match``);
validates every tensor's shape in B's layout before loading any; loads A's tensors into B; runs
B again and compares each paired layer's output, then the models' outputs, under the suite's
tolerance (``parity.harness.TOLERANCE``: float32 relative to the values' scale). At the first
layer that differs, it names the cause as ``parity explain`` does (``parity.divergence``), and
checks every later layer on its own inputs. Models that do not line up get a structural report,
and B is left as it was.

``load=False`` compares B as it is: weights the user's own converter moved.
"""

from parity.port_check.check import PortCheck, Ports, port_check
from parity.port_check.match import AmbiguousMatch, Mismatch, Pair, transform_text
from parity.port_check.native import PortCheckError

__all__ = ["AmbiguousMatch", "Mismatch", "Pair", "PortCheck", "PortCheckError", "Ports", "port_check", "transform_text"]
