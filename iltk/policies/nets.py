"""Building blocks: the observation encoder and the action heads."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from iltk.policies.base import Normalizer
from iltk.policies.configs import PolicyConfig


def mlp(
    inp: int, hidden: list[int], out: int | None, act=nn.ReLU, dropout: float = 0.0
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(inp, h), act()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        inp = h
    if out is not None:
        layers.append(nn.Linear(inp, out))
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """A small CNN trained from scratch (no pretrained weights can be downloaded here).

    uint8 (..., H, W, C) images -> (..., feature_dim), with a spatial-softmax keypoint
    readout as in robomimic's visual policies.
    """

    def __init__(self, shape: list[int], feature_dim: int):
        super().__init__()
        h, w, c = shape
        self.conv = nn.Sequential(
            nn.Conv2d(c, 32, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 32, 3, stride=1, padding=1),
        )
        self.proj = nn.Linear(2 * 32, feature_dim)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        lead = img.shape[:-3]
        x = img.reshape(-1, *img.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0 - 0.5
        f = self.conv(x)  # (B, K, h, w)
        b, k, h, w = f.shape
        attn = F.softmax(f.reshape(b, k, h * w), dim=-1)
        ys = torch.linspace(-1, 1, h, device=f.device)
        xs = torch.linspace(-1, 1, w, device=f.device)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        kp = torch.stack(
            [(attn * gx.reshape(1, 1, -1)).sum(-1), (attn * gy.reshape(1, 1, -1)).sum(-1)], -1
        )
        return self.proj(kp.reshape(b, 2 * k)).reshape(*lead, -1)


class ObsEncoder(nn.Module):
    """Normalized state vector concatenated with per-camera CNN features."""

    def __init__(self, config: PolicyConfig, normalizer: Normalizer):
        super().__init__()
        # a plain reference, not a submodule: the policy owns (and saves) the normalizer
        self._normalizer = (normalizer,)
        self.image_keys = sorted(config.image_shapes)
        self.cams = nn.ModuleDict(
            {
                k: ConvEncoder(config.image_shapes[k], config.image_feature_dim)
                for k in self.image_keys
            }
        )
        self.out_dim = config.state_dim + config.image_feature_dim * len(self.image_keys)

    @property
    def normalizer(self) -> Normalizer:
        return self._normalizer[0]

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        if self.normalizer.state_mean.numel():
            parts.append(self.normalizer.state(obs["state"]))
        parts += [self.cams[k](obs[k]) for k in self.image_keys]
        return torch.cat(parts, -1)

    def tokens(self, obs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """One feature vector per modality (state, each camera), for transformers."""
        out = []
        if self.normalizer.state_mean.numel():
            out.append(self.normalizer.state(obs["state"]))
        out += [self.cams[k](obs[k]) for k in self.image_keys]
        return out


def gmm_log_prob(
    actions: torch.Tensor, logits: torch.Tensor, means: torch.Tensor, scales: torch.Tensor
) -> torch.Tensor:
    """log p(a) of a mixture of K diagonal Gaussians.

    Shapes: actions (..., A), logits (..., K), means and scales (..., K, A).
    """
    a = actions.unsqueeze(-2)
    z = (a - means) / scales
    comp = (
        -0.5 * (z * z).sum(-1)
        - torch.log(scales).sum(-1)
        - 0.5 * a.shape[-1] * math.log(2 * math.pi)
    )
    return torch.logsumexp(F.log_softmax(logits, -1) + comp, -1)


class GMMHead(nn.Module):
    """robomimic's GMM head: K modes, softplus scales plus a minimum std, low-noise eval.

    Acting returns a mode's mean: the likeliest mode's (``deterministic``) or one drawn from
    the mixture weights, which is robomimic's low-noise evaluation (scales set to 1e-4).
    """

    def __init__(self, inp: int, action_dim: int, modes: int = 5, min_std: float = 0.05):
        super().__init__()
        self.k, self.a, self.min_std = modes, action_dim, min_std
        self.out = nn.Linear(inp, modes * (2 * action_dim + 1))

    def params(self, h: torch.Tensor):
        out = self.out(h)
        lead = out.shape[:-1]
        means, scales, logits = out.split([self.k * self.a, self.k * self.a, self.k], -1)
        means = means.reshape(*lead, self.k, self.a)
        scales = F.softplus(scales.reshape(*lead, self.k, self.a)) + self.min_std
        return logits, means, scales

    def nll(self, h: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        logits, means, scales = self.params(h)
        return -gmm_log_prob(actions, logits, means, scales)

    def act(self, h: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        logits, means, _ = self.params(h)
        if deterministic:
            idx = logits.argmax(-1)
        else:
            idx = torch.distributions.Categorical(logits=logits).sample()
        return torch.gather(means, -2, idx[..., None, None].expand(*idx.shape, 1, self.a)).squeeze(
            -2
        )


class GaussianHead(nn.Module):
    """A state-dependent diagonal Gaussian; acting returns the mean, or a sample when not
    ``deterministic`` (``stochastic_eval``)."""

    def __init__(
        self, inp: int, action_dim: int, min_log_std: float = -5.0, max_log_std: float = 2.0
    ):
        super().__init__()
        self.out = nn.Linear(inp, 2 * action_dim)
        self.lo, self.hi = min_log_std, max_log_std

    def params(self, h):
        mean, log_std = self.out(h).chunk(2, -1)
        return mean, log_std.clamp(self.lo, self.hi)

    def nll(self, h, actions):
        mean, log_std = self.params(h)
        z = (actions - mean) * torch.exp(-log_std)
        return (0.5 * z * z + log_std + 0.5 * math.log(2 * math.pi)).sum(-1)

    def act(self, h, deterministic: bool = True):
        mean, log_std = self.params(h)
        return mean if deterministic else mean + torch.exp(log_std) * torch.randn_like(mean)


class DeterministicHead(nn.Module):
    def __init__(self, inp: int, action_dim: int, loss: str = "mse"):
        super().__init__()
        if loss not in ("mse", "l1"):
            raise ValueError(f"deterministic loss must be 'mse' or 'l1', got {loss!r}")
        self.out = nn.Linear(inp, action_dim)
        self.loss_type = loss

    def nll(self, h, actions):
        pred = self.out(h)
        if self.loss_type == "mse":
            return ((pred - actions) ** 2).sum(-1)
        return (pred - actions).abs().sum(-1)

    def act(self, h, deterministic: bool = True):
        return self.out(h)


def make_head(
    kind: str, inp: int, action_dim: int, *, modes: int, min_std: float, loss: str
) -> nn.Module:
    if kind == "deterministic":
        return DeterministicHead(inp, action_dim, loss)
    if kind == "gaussian":
        return GaussianHead(inp, action_dim)
    if kind == "gmm":
        return GMMHead(inp, action_dim, modes, min_std)
    raise ValueError(f"head must be deterministic, gaussian or gmm, got {kind!r}")
