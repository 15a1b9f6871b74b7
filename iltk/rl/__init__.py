"""Reinforcement learning: PPO as pieces that fine-tuning and IRL compose.

- ``stats``: running observation statistics and the reward scale;
- ``gae``: generalized advantage estimation;
- ``loss``: PPO's loss, the one reference (clip or adaptive KL, value, entropy);
- ``buffer``: the rollout buffer filled from the control loop;
- ``acting``: the collecting controller;
- ``rewards``: where rewards come from (``RewardSource``);
- ``updaters``: who takes the minibatch steps (torch; numpy, opt-in, ``numpy_update``);
- ``ppo``: ``PPO`` (``collect``, ``update``), ``Callback``, ``CriticWarmup``.

The run around PPO (folders, evaluation, checkpoints) is ``iltk.algos.ppo``.
"""
