# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Target outputs: where and how a converted guest is written and described.

One file per output kind, each with one :class:`base.Output` subclass; the
registry below is the only list of output kinds (module choices and docs
follow it). Adding an output: a new file here with its class, one line in
``_OUTPUT_CLASSES``, and the option's choices/docs in convert_guest.
"""

from __future__ import annotations

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.base import Output
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.kubevirt import KubevirtOutput
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.libvirt import LibvirtOutput
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.local import LocalOutput
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.null import NullOutput
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.qemu import QemuOutput

_OUTPUT_CLASSES: tuple[type[Output], ...] = (
    LocalOutput,
    QemuOutput,
    NullOutput,
    LibvirtOutput,
    KubevirtOutput,
)
OUTPUTS: dict[str, type[Output]] = {cls.kind: cls for cls in _OUTPUT_CLASSES}
OUTPUT_KINDS: tuple[str, ...] = tuple(OUTPUTS)


def output_for(options: object) -> Output:
    """The output ``options.output`` names, built from (and validating) ``options``."""
    kind = getattr(options, "output", None)
    cls = OUTPUTS.get(str(kind))
    if cls is None:
        raise V2VError(f"unknown output {kind!r}", hint=f"Use one of: {', '.join(OUTPUT_KINDS)}")
    return cls(options)  # type: ignore[arg-type]
