"""Behaviour cloning policies: ``bc`` (MLP) and ``bc-rnn`` (LSTM / GRU over windows).

Pomerleau 1989 (ALVINN) for BC; Mandlekar et al. 2021 ("What Matters in Learning from
Offline Human Demonstrations", robomimic) for BC-RNN and the GMM head, whose defaults
(2 layers, hidden 400, sequence length 10, 5 modes) are ours.
"""

from __future__ import annotations

import torch
from torch import nn

from iltk.policies.base import Policy
from iltk.policies.configs import HEADS, BCConfig, BCRNNConfig, HeadConfig  # noqa: F401
from iltk.policies.nets import ObsEncoder, make_head, mlp


class BCPolicy(Policy):
    kind = "step"

    def __init__(self, config: BCConfig):
        super().__init__(config)
        self.encoder = ObsEncoder(config, self.normalizer)
        self.trunk = mlp(self.encoder.out_dim, config.hidden, None, dropout=config.dropout)
        inp = config.hidden[-1] if config.hidden else self.encoder.out_dim
        self.head = make_head(
            config.head,
            inp,
            config.action_dim,
            modes=config.gmm_modes,
            min_std=config.gmm_min_std,
            loss=config.loss,
        )

    def loss(self, batch):
        h = self.trunk(self.encoder(batch["obs"]))
        nll = self.head.nll(h, self.normalizer.actions(batch["actions"]))
        w = batch.get("weights")
        loss = (nll * w).sum() / w.sum().clamp_min(1e-8) if w is not None else nll.mean()
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    def predict(self, obs):
        h = self.trunk(self.encoder(obs))
        a = self.head.act(h, deterministic=not self.config.stochastic_eval)
        return self.normalizer.unactions(a)


class BCRNNPolicy(Policy):
    kind = "recurrent"

    def __init__(self, config: BCRNNConfig):
        super().__init__(config)
        self.encoder = ObsEncoder(config, self.normalizer)
        rnn = nn.LSTM if config.rnn_type == "lstm" else nn.GRU
        self.rnn = rnn(self.encoder.out_dim, config.rnn_hidden, config.rnn_layers, batch_first=True)
        self.head = make_head(
            config.head,
            config.rnn_hidden,
            config.action_dim,
            modes=config.gmm_modes,
            min_std=config.gmm_min_std,
            loss=config.loss,
        )

    def batch_spec(self):
        return {"kind": "window", "seq_len": self.config.seq_len}

    def loss(self, batch):
        feats = self.encoder(batch["obs"])  # (B, L, F)
        out, _ = self.rnn(feats)
        nll = self.head.nll(out, self.normalizer.actions(batch["actions"]))  # (B, L)
        w = batch["weights"] * batch["mask"]
        loss = (nll * w).sum() / w.sum().clamp_min(1e-8)
        return loss, {"loss": loss.detach()}

    def init_hidden(self, n: int):
        shape = (self.config.rnn_layers, n, self.config.rnn_hidden)
        zeros = torch.zeros(shape, device=self.device)
        return (zeros, zeros.clone()) if self.config.rnn_type == "lstm" else zeros

    @staticmethod
    def reset_hidden(hidden, env_ids):
        if isinstance(hidden, tuple):
            for h in hidden:
                h[:, env_ids] = 0
        else:
            hidden[:, env_ids] = 0
        return hidden

    @torch.no_grad()
    def predict_step(self, obs, hidden):
        feats = self.encoder(obs).unsqueeze(1)  # (N, 1, F)
        out, hidden = self.rnn(feats, hidden)
        a = self.head.act(out[:, 0], deterministic=not self.config.stochastic_eval)
        return self.normalizer.unactions(a), hidden
