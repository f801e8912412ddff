"""Every `--method` preset's resolved settings as docs/methods.md tables them, one row per
knob: the presets' tests (test_fidelity_presets.py) pin them and the channel-sorting tests
(test_fidelity_channel_sorting.py) build each preset on its space from here."""

# "space" is the space a preset is built on here.
# The regularisation, initialisation, input sizes, full network and update rule every preset but
# bignas and compofa shares (`RIVALS` holds theirs).
COMMON = dict(dropout=0.1, drop_connect=0.0, zero_residual_gamma=False, resolution_per_network=False, full_kernel=None,
              optimizer_name="sgd")
RIVALS = {"bignas": dict(COMMON, dropout=0.2, drop_connect=0.2, zero_residual_gamma=True, resolution_per_network=True),
          "compofa": dict(COMMON, full_kernel=7)}
EXPECTED = {
    "deps": dict(space="ofa_mbv3", lr_per_256=0.325, lr_schedule="run", weight_decay=3e-5, weight_decay_form="coupled",
                 grad_clip_mode="none", grad_clip=None, restart_optimizer=False, subnet_dropout=False,
                 phases=[("fm_warmup", 0.5, 1.0, 0.0), ("shrink", 0.5, 1.0, 0.0)]),
    "bignas": dict(space="ofa_mbv3", lr_per_256=0.1, lr_schedule="run", weight_decay=1e-5, weight_decay_form="coupled",
                   grad_clip_mode="value", grad_clip=1.0, restart_optimizer=False, subnet_dropout=False,
                   phases=[("sandwich", 1.0, 1.0, 5 / 360)]),
    "ofa": dict(space="ofa_mbv3", lr_per_256=0.325, lr_schedule="phase", weight_decay=3e-5,
                weight_decay_form="coupled", grad_clip_mode="none", grad_clip=None, restart_optimizer=True,
                subnet_dropout=True,
                phases=[("full", 180 / 605, 1.0, 0.0), ("kernel", 125 / 605, 0.96 / 2.6, 5 / 125),
                        ("depth_1", 25 / 605, 0.08 / 2.6, 0.0), ("depth_2", 125 / 605, 0.24 / 2.6, 5 / 125),
                        ("expand_1", 25 / 605, 0.08 / 2.6, 0.0), ("expand_2", 125 / 605, 0.24 / 2.6, 5 / 125)]),
    "compofa": dict(space="compofa", lr_per_256=0.325, lr_schedule="phase", weight_decay=3e-5,
                    weight_decay_form="coupled", grad_clip_mode="none", grad_clip=None, restart_optimizer=True,
                    subnet_dropout=True,
                    phases=[("full", 180 / 330, 1.0, 0.0), ("compound_1", 25 / 330, 0.08 / 2.6, 0.0),
                            ("compound_2", 125 / 330, 0.24 / 2.6, 5 / 125)]),
    "fofa": dict(space="compofa", lr_per_256=0.325, lr_schedule="run", weight_decay=3e-5, weight_decay_form="coupled",
                 grad_clip_mode="value", grad_clip=1.0, restart_optimizer=False, subnet_dropout=True,
                 phases=[("warmup", 5 / 185, 1.0, 0.0), ("upper_attentive", 180 / 185, 1.0, 0.0)]),
    "tofa": dict(space="ofa_mbv3", lr_per_256=0.08, lr_schedule="run", weight_decay=1e-5, weight_decay_form="coupled",
                 grad_clip_mode="none", grad_clip=None, restart_optimizer=False, subnet_dropout=True,
                 phases=[("sandwich", 1.0, 1.0, 0.0)]),
    "full": dict(space="ofa_mbv3", lr_per_256=0.325, lr_schedule="run", weight_decay=3e-5, weight_decay_form="coupled",
                 grad_clip_mode="none", grad_clip=None, restart_optimizer=False, subnet_dropout=True,
                 phases=[("full", 1.0, 1.0, 0.0)]),
}
for _name, _settings in EXPECTED.items():
    _settings.update(RIVALS.get(_name, COMMON))
