"""One training run, and everything it reads and writes. Read in this order:

1. ``story``      ``Run``: check the options, take the folder, build, begin, fit epoch by epoch
                  (each saved), finish; an interrupt becomes an account of what last.pt holds.
2. ``build``      what a run needs, in one order: seed, device, precision, data, model, inputs,
                  loss, optimiser (or the linear probe), schedule, and a resumed run's state.
3. ``inputs``     what the loop iterates over: decoded images or cached features;
   ``features``   the frozen-feature cache.
4. ``checkpoint`` the checkpoint dict: built, written atomically, read back.
5. ``wiseft``     phase 2's last step: phase 1's and phase 2's weights mixed as val prefers.
6. ``result``     ``RunResult``, what a run returns.
7. ``finetune``   phase 2: a ``Run`` that starts from phase 1's best.pt;
   ``resume``     a ``Run`` that goes on from its own last.pt, and ``--resume auto``.
8. The folder: ``folder`` (``RunFolder``: what may be there, its documents), ``lock``,
   ``marker`` (which files are tlcli's, which run a folder holds), ``record`` (history.csv,
   log.txt, curves.png, TensorBoard), ``repair`` (after a kill), ``locate`` (``latest``,
   finding a run from what the user typed).

The epoch itself (``train_one_epoch``, ``evaluate``) is the engine's: ``tlcli.engine.loop``.
"""
