"""Operations: the health of a deployment (`fl status`) and host requirements.

Playbooks collect and print; the checks themselves live here, as tested code:
:mod:`fl_runtime.ops.status` for ``playbooks/status.yml`` and the Molecule
verify steps, :mod:`fl_runtime.ops.hostcheck` for ``playbooks/validate_hosts.yml``
(through the ``fedge_host_problems`` filter in ``plugins/filter``).
"""
