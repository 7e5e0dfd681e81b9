"""``python -m llama_cpp.server``, with llama.cpp's weight repacking off: the tests' llama.cpp
server.

Why not the module as is: the CPUs these tests run on advertise AMX, and llama.cpp then repacks
the bundled GGUF's Q4_1 weights for its AMX kernels, but the virtual machines do not let AMX
instructions run: the first prompt of more than one token kills the server with SIGILL. With
extra buffer types off (``use_extra_bufts``, llama.cpp's ``--no-repack``) the same server runs
the same model on its AVX-512 kernels. Everything else is the PyPI server, arguments included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import llama_cpp.llama_cpp as bindings
from llama_cpp.server.__main__ import main

serve: Callable[[], None] = main
_defaults = bindings.llama_model_default_params


def _without_repacking() -> Any:
    params = _defaults()
    params.use_extra_bufts = False
    return params


if __name__ == "__main__":
    bindings.llama_model_default_params = _without_repacking  # read by Llama.__init__
    serve()
