"""``act``: a transformer that predicts a chunk of K actions (Zhao et al. 2023, ACT).

The decoder's K learned queries attend to a memory of tokens: the latent z, the
normalized state and one token per camera. With ``use_vae`` a CVAE encoder (a small
transformer over [CLS, state, a_1..a_K]) infers z during training, regularized by
``kl_weight`` * KL(q(z|s,a) || N(0, I)); at inference z = 0, as in ACT. The loss is L1 on
the normalized actions, masked where the chunk runs past the episode's end.

Deviations from the paper, on purpose: no ResNet backbone (no pretrained weights can be
downloaded here; cameras go through the small from-scratch CNN), one decoder layer by
default (LeRobot found ACT's 7-layer decoder used only its first layer's output), and a
chunk of 20 at 20 Hz (ACT's 100 was at 50 Hz).
"""

from __future__ import annotations

import torch
from torch import nn

from iltk.policies.base import Policy
from iltk.policies.configs import ACTConfig
from iltk.policies.nets import ObsEncoder


def _encoder(d, heads, ff, dropout, layers):
    layer = nn.TransformerEncoderLayer(d, heads, ff, dropout, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class ACTPolicy(Policy):
    kind = "chunk"

    def __init__(self, config: ACTConfig):
        super().__init__(config)
        d = config.d_model
        self.encoder = ObsEncoder(config, self.normalizer)
        self.has_state = config.state_dim > 0
        self.state_proj = nn.Linear(config.state_dim, d) if self.has_state else None
        self.cam_proj = nn.ModuleDict(
            {k: nn.Linear(config.image_feature_dim, d) for k in sorted(config.image_shapes)}
        )
        n_obs_tokens = int(self.has_state) + len(config.image_shapes)
        self.latent_proj = nn.Linear(config.latent_dim, d)
        self.memory_pos = nn.Parameter(torch.randn(1 + n_obs_tokens, d) * 0.02)
        self.obs_encoder = _encoder(
            d, config.n_heads, config.dim_feedforward, config.dropout, config.enc_layers
        )
        dec_layer = nn.TransformerDecoderLayer(
            d,
            config.n_heads,
            config.dim_feedforward,
            config.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.decoder = nn.TransformerDecoder(dec_layer, config.dec_layers)
        self.queries = nn.Parameter(torch.randn(config.chunk_size, d) * 0.02)
        self.action_out = nn.Linear(d, config.action_dim)
        if config.use_vae:
            self.vae_cls = nn.Parameter(torch.randn(1, d) * 0.02)
            self.vae_action_proj = nn.Linear(config.action_dim, d)
            self.vae_state_proj = nn.Linear(max(config.state_dim, 1), d)
            self.vae_pos = nn.Parameter(torch.randn(2 + config.chunk_size, d) * 0.02)
            self.vae_encoder = _encoder(
                d, config.n_heads, config.dim_feedforward, config.dropout, config.enc_layers
            )
            self.vae_out = nn.Linear(d, 2 * config.latent_dim)

    def batch_spec(self):
        return {"kind": "chunk", "chunk": self.config.chunk_size}

    def _obs_tokens(self, obs):
        parts = self.encoder.tokens(obs)
        toks = []
        if self.has_state:
            toks.append(self.state_proj(parts.pop(0)))
        for k, feat in zip(sorted(self.config.image_shapes), parts):
            toks.append(self.cam_proj[k](feat))
        return toks

    def _decode(self, obs, z):
        b = z.shape[0]
        tokens = [self.latent_proj(z)] + self._obs_tokens(obs)
        memory = torch.stack(tokens, 1) + self.memory_pos
        memory = self.obs_encoder(memory)
        queries = self.queries.unsqueeze(0).expand(b, -1, -1)
        return self.action_out(self.decoder(queries, memory))

    def loss(self, batch):
        obs = batch["obs"]
        target = self.normalizer.actions(batch["actions"])  # (B, K, A)
        valid = (~batch["pad"]).float()
        b = target.shape[0]
        kl = torch.zeros((), device=target.device)
        if self.config.use_vae:
            state = (
                self.normalizer.state(obs["state"])
                if self.has_state
                else torch.zeros(b, 1, device=target.device)
            )
            seq = (
                torch.cat(
                    [
                        self.vae_cls.expand(b, 1, -1),
                        self.vae_state_proj(state)[:, None],
                        self.vae_action_proj(target),
                    ],
                    1,
                )
                + self.vae_pos
            )
            key_pad = torch.cat(
                [torch.zeros(b, 2, dtype=torch.bool, device=target.device), batch["pad"]], 1
            )
            mu, logvar = self.vae_out(
                self.vae_encoder(seq, src_key_padding_mask=key_pad)[:, 0]
            ).chunk(2, -1)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1).mean()
        else:
            z = torch.zeros(b, self.config.latent_dim, device=target.device)
        pred = self._decode(obs, z)
        l1 = ((pred - target).abs().mean(-1) * valid).sum(-1) / valid.sum(-1).clamp_min(1)
        w = batch.get("weights")
        l1 = (l1 * w).sum() / w.sum().clamp_min(1e-8) if w is not None else l1.mean()
        loss = l1 + self.config.kl_weight * kl
        return loss, {
            "loss": loss.detach(),
            "l1": l1.detach(),
            "kl": kl.detach(),
        }

    @torch.no_grad()
    def predict_chunk(self, obs, *, prefix=None, prefix_mask=None, generator=None):
        if prefix is not None:
            raise ValueError("act cannot inpaint a chunk around fixed actions (rtc_steps)")
        ref = obs["state"] if "state" in obs else next(iter(obs.values()))
        z = torch.zeros(ref.shape[0], self.config.latent_dim, device=ref.device)
        return self.normalizer.unactions(self._decode(obs, z))
