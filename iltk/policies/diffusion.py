"""``diffusion``: generative action chunks from a conditional 1-D U-Net.

Diffusion Policy (Chi et al. 2023): the last ``n_obs_steps`` observations are encoded (the
normalized state and the cameras' CNN features) and flattened into one conditioning
vector; a temporal U-Net over the ``horizon`` predicted actions (steps t - n_obs + 1 ...)
takes it through FiLM (a per-channel scale and bias in every residual block), with the
noise level embedded sinusoidally beside it. Three objectives on the same network:

- ``diffusion``: DDPM training (the squared-cosine schedule of ``noise_steps`` levels,
  epsilon prediction, MSE) and DDIM sampling in ``sampling_steps`` (eta 0, the clean
  estimate clipped to +-``clip_sample``), as diffusers' schedulers that LeRobot uses; the
  actions enter scaled from their bounds to [-1, 1] (``action_scaling``), as theirs;
- ``flow``: flow matching on the linear path x_t = (1 - t) z + t a (z ~ N(0, I)), the
  velocity a - z as target, ``sampling_steps`` Euler steps from t = 0 (from z ~ N(0, I),
  from z = 0, or the mean over samples: ``flow_init``);
- ``regression``: the network fed zeros at level 0 and trained with MSE on the actions.

The schedules are the few lines below rather than diffusers': the policy needs two
formulas (the noising and one DDIM step) whose tests check them by hand, and diffusers
would bring its hub and config machinery into every install for them.

Acting uses an exponential moving average of the weights (kept in the checkpoint beside
them). Real-time chunking: ``predict_chunk(obs, prefix=...)`` generates a chunk whose first
k actions are fixed to ``prefix``: at every denoising (or Euler) step the prefix is put
back at the noise level of that step (replacement inpainting), and it is exactly the
prefix at the end; the rest of the chunk is generated around it.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from iltk.policies.base import Policy
from iltk.policies.configs import DiffusionConfig
from iltk.policies.nets import ObsEncoder

# ----------------------------------------------------------------------------- schedules


def cosine_betas(n: int, max_beta: float = 0.999) -> torch.Tensor:
    """The squared-cosine schedule (Nichol & Dhariwal 2021; diffusers' "squaredcos_cap_v2"):
    beta_i = min(1 - abar((i+1)/n) / abar(i/n), max_beta), abar(t) = cos((t+0.008)/1.008
    pi/2)^2."""

    def abar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - abar((i + 1) / n) / abar(i / n), max_beta) for i in range(n)]
    return torch.tensor(betas, dtype=torch.float64)


class NoiseSchedule(nn.Module):
    """DDPM's noising and DDIM's deterministic step over ``n`` levels (buffers, so they
    move with the policy's device)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        alphas_cumprod = torch.cumprod(1.0 - cosine_betas(n), 0)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)

    def add_noise(self, x0, noise, t):
        """q(x_t | x_0): sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (``t``: (B,) levels)."""
        ab = self.alphas_cumprod[t].reshape(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def ddim_timesteps(self, steps: int) -> list[int]:
        """The levels DDIM visits, highest first ("leading" spacing: 0, n/steps, ...)."""
        ratio = self.n // steps
        return [i * ratio for i in range(steps)][::-1]

    def ddim_step(self, eps, t: int, x, prev_t: int, clip: float):
        """x_{prev_t} from x_t and the predicted noise (eta = 0; abar = 1 past level 0)."""
        ab_t = self.alphas_cumprod[t]
        ab_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else torch.ones_like(ab_t)
        x0 = (x - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
        if clip > 0:
            x0 = x0.clamp(-clip, clip)
        return ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps


# ----------------------------------------------------------------------------- the U-Net


class SinusoidalEmbedding(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(
            torch.arange(half, device=x.device, dtype=torch.float32)
            * (-math.log(10000.0) / max(half - 1, 1))
        )
        arg = x.float()[:, None] * freqs[None, :]
        return torch.cat([arg.sin(), arg.cos()], -1)


class ConvBlock(nn.Sequential):
    def __init__(self, inp: int, out: int, kernel: int, groups: int):
        super().__init__(
            nn.Conv1d(inp, out, kernel, padding=kernel // 2), nn.GroupNorm(groups, out), nn.Mish()
        )


class FiLMResBlock(nn.Module):
    """Two conv blocks; the conditioning sets a per-channel scale and bias between them."""

    def __init__(self, inp: int, out: int, cond_dim: int, kernel: int, groups: int):
        super().__init__()
        self.block1 = ConvBlock(inp, out, kernel, groups)
        self.block2 = ConvBlock(out, out, kernel, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out))
        self.skip = nn.Conv1d(inp, out, 1) if inp != out else nn.Identity()

    def forward(self, x, cond):
        h = self.block1(x)
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, 1)
        h = self.block2(scale * h + bias)
        return h + self.skip(x)


class ConditionalUnet1D(nn.Module):
    """Chi et al.'s ConditionalUnet1D: (B, T, A) noisy actions, (B,) levels and (B, G)
    conditioning -> (B, T, A)."""

    def __init__(
        self, action_dim: int, cond_dim: int, config: DiffusionConfig, extra_inputs: int = 0
    ):
        super().__init__()
        k, g, d = config.kernel_size, config.n_groups, config.step_embed_dim
        self.step_embed = nn.Sequential(
            SinusoidalEmbedding(d), nn.Linear(d, 4 * d), nn.Mish(), nn.Linear(4 * d, d)
        )
        cond = d + cond_dim
        dims = [action_dim + extra_inputs, *config.down_dims]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.down = nn.ModuleList()
        for i, (a, b) in enumerate(pairs):
            last = i == len(pairs) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        FiLMResBlock(a, b, cond, k, g),
                        FiLMResBlock(b, b, cond, k, g),
                        nn.Conv1d(b, b, 3, 2, 1) if not last else nn.Identity(),
                    ]
                )
            )
        mid = dims[-1]
        self.mid = nn.ModuleList([FiLMResBlock(mid, mid, cond, k, g) for _ in range(2)])
        self.up = nn.ModuleList()
        for a, b in reversed(pairs[1:]):  # each level back up to the length it came from
            self.up.append(
                nn.ModuleList(
                    [
                        FiLMResBlock(2 * b, a, cond, k, g),
                        FiLMResBlock(a, a, cond, k, g),
                        nn.ConvTranspose1d(a, a, 4, 2, 1),
                    ]
                )
            )
        start = config.down_dims[0]
        self.final = nn.Sequential(ConvBlock(start, start, k, g), nn.Conv1d(start, action_dim, 1))
        self.extra_inputs = extra_inputs

    def forward(self, sample, level, cond):
        x = sample.transpose(1, 2)  # (B, A, T)
        c = torch.cat([self.step_embed(level), cond], -1)
        skips = []
        for res1, res2, down in self.down:
            x = res2(res1(x, c), c)
            skips.append(x)
            x = down(x)
        for res in self.mid:
            x = res(x, c)
        for res1, res2, up in self.up:
            x = torch.cat([x, skips.pop()], 1)
            x = up(res2(res1(x, c), c))
        return self.final(x).transpose(1, 2)


# ----------------------------------------------------------------------------- the policy


class DiffusionPolicy(Policy):
    kind = "chunk"

    def __init__(self, config: DiffusionConfig):
        super().__init__(config)
        self.encoder = ObsEncoder(config, self.normalizer)
        cond_dim = self.encoder.out_dim * config.n_obs_steps
        flag = 1 if config.prefix_training else 0  # the channel marking a fixed prefix
        self.net = ConditionalUnet1D(config.action_dim, cond_dim, config, extra_inputs=flag)
        self.schedule = NoiseSchedule(config.noise_steps)
        if config.action_scaling == "bounds":
            low = torch.tensor(config.action_low, dtype=torch.float32)
            high = torch.tensor(config.action_high, dtype=torch.float32)
            if (
                low.numel() != config.action_dim
                or high.numel() != config.action_dim
                or not bool(torch.isfinite(low).all() & torch.isfinite(high).all())
                or not bool((high > low).all())
            ):
                raise ValueError(
                    "action_scaling bounds needs finite action bounds (action_low < "
                    "action_high, one per action dim); use action_scaling zscore"
                )
            self.register_buffer("low", low, persistent=False)
            self.register_buffer("high", high, persistent=False)
        # the weights that act: an exponential moving average (saved with the checkpoint)
        self.ema = copy.deepcopy(nn.ModuleDict({"encoder": self.encoder, "net": self.net}))
        self.ema.requires_grad_(False)
        self.ema["encoder"]._normalizer = (self.normalizer,)  # the one normalizer

    def scale(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions in the network's units: the bounds mapped to [-1, 1], or z-scores."""
        if self.config.action_scaling == "zscore":
            return self.normalizer.actions(actions)
        return 2 * (actions - self.low) / (self.high - self.low) - 1

    def unscale(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.action_scaling == "zscore":
            return self.normalizer.unactions(x)
        return (x + 1) / 2 * (self.high - self.low) + self.low

    def batch_spec(self):
        c = self.config
        return {"kind": "history_chunk", "n_obs": c.n_obs_steps, "horizon": c.horizon}

    # ------------------------------------------------------------------ training
    def _cond(self, obs, encoder) -> torch.Tensor:
        feats = encoder(obs)  # (B, n_obs, F)
        return feats.reshape(feats.shape[0], -1)

    def _inputs(self, x, fixed, clean):
        """The network's input: with prefix training, ``fixed`` (B, H, 1) positions hold
        their ``clean`` values and the flag channel marks them."""
        if not self.config.prefix_training:
            return x
        x = torch.where(fixed, clean, x)
        return torch.cat([x, fixed.to(x.dtype)], -1)

    def _random_prefix(self, target) -> torch.Tensor:
        """(B, H, 1): a clean prefix of 0..K actions from the current step, per sample."""
        c = self.config
        b, h = target.shape[:2]
        if not c.prefix_training:
            return torch.zeros(b, h, 1, dtype=torch.bool, device=target.device)
        k = torch.randint(0, c.prefix_training + 1, (b, 1), device=target.device)
        pos = torch.arange(h, device=target.device)[None] - (c.n_obs_steps - 1)
        return ((pos >= 0) & (pos < k))[..., None]

    def loss(self, batch):
        c = self.config
        target = self.scale(batch["actions"])  # (B, H, A)
        cond = self._cond(batch["obs"], self.encoder)
        b = target.shape[0]
        fixed = self._random_prefix(target)
        if c.objective == "diffusion":
            noise = torch.randn_like(target)
            t = torch.randint(0, c.noise_steps, (b,), device=target.device)
            x = self._inputs(self.schedule.add_noise(target, noise, t), fixed, target)
            err = (self.net(x, t, cond) - noise).pow(2)
        elif c.objective == "flow":
            z = torch.randn_like(target)
            t = torch.rand(b, device=target.device)
            tt = t[:, None, None]
            x = self._inputs((1 - tt) * z + tt * target, fixed, target)
            err = (self.net(x, t * c.noise_steps, cond) - (target - z)).pow(2)
        else:
            zeros = torch.zeros(b, device=target.device)
            x = self._inputs(torch.zeros_like(target), fixed, target)
            err = (self.net(x, zeros, cond) - target).pow(2)
        keep = (~fixed).to(err.dtype)  # a fixed action is given, not predicted
        per = (err * keep).sum((1, 2)) / (keep.sum((1, 2)) * err.shape[-1]).clamp_min(1)
        w = batch.get("weights")
        loss = (per * w).sum() / w.sum().clamp_min(1e-8) if w is not None else per.mean()
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """Move the EMA towards the trained weights (diffusers' EMAModel warm-up)."""
        decay = min(self.config.ema_decay, 1.0 - (1.0 + step) ** -0.75)
        src = [*self.encoder.parameters(), *self.net.parameters()]
        dst = [*self.ema["encoder"].parameters(), *self.ema["net"].parameters()]
        torch._foreach_lerp_(dst, src, 1.0 - decay)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def predict_chunk(self, obs, *, prefix=None, prefix_mask=None, generator=None):
        """The actions from the current step on, (B, chunk_size, A) in real units, from
        ``obs`` with (B, n_obs_steps, ...) leaves. ``prefix`` (B, k, A), where
        ``prefix_mask`` (B,) is True, fixes the chunk's first k actions (real-time
        chunking); ``generator`` draws the noise."""
        c = self.config
        acting_ema = c.ema_decay > 0
        encoder = self.ema["encoder"] if acting_ema else self.encoder
        net = self.ema["net"] if acting_ema else self.net
        cond = self._cond(obs, encoder)
        b, dev = cond.shape[0], cond.device
        shape = (b, c.horizon, c.action_dim)
        past = c.n_obs_steps - 1
        known = None
        if prefix is not None:
            k = prefix.shape[1]
            known = torch.zeros(shape, device=dev)
            known[:, past : past + k] = self.scale(prefix)
            mask = torch.zeros(shape, dtype=torch.bool, device=dev)
            rows = (
                torch.ones(b, dtype=torch.bool, device=dev) if prefix_mask is None else prefix_mask
            )
            mask[rows, past : past + k] = True
        trained = bool(c.prefix_training)  # the network continues a clean prefix
        flags = (
            mask[..., :1]
            if known is not None
            else torch.zeros(b, c.horizon, 1, dtype=torch.bool, device=dev)
        )

        def run(x, level):
            if trained:
                x = torch.cat(
                    [torch.where(mask, known, x) if known is not None else x, flags.to(x.dtype)], -1
                )
            return net(x, level, cond)

        def noise():
            return torch.randn(shape, generator=generator, device=dev)

        if c.objective == "diffusion":
            x = noise()
            z = noise() if known is not None else None
            steps = self.schedule.ddim_timesteps(c.sampling_steps)
            for i, t in enumerate(steps):
                if known is not None and not trained:  # the prefix at this level
                    level = torch.full((b,), t, device=dev, dtype=torch.long)
                    x = torch.where(mask, self.schedule.add_noise(known, z, level), x)
                eps = run(x, torch.full((b,), t, device=dev))
                prev = steps[i + 1] if i + 1 < len(steps) else -1
                x = self.schedule.ddim_step(eps, t, x, prev, c.clip_sample)
        elif c.objective == "flow":
            draws = c.flow_mean_samples if c.flow_init == "mean" else 1
            outs = []
            for _ in range(draws):
                z = torch.zeros(shape, device=dev) if c.flow_init == "zero" else noise()
                x = z
                n = c.sampling_steps
                for i in range(n):
                    t = i / n
                    if known is not None and not trained:
                        x = torch.where(mask, (1 - t) * z + t * known, x)
                    v = run(x, torch.full((b,), t * c.noise_steps, device=dev))
                    x = x + v / n
                outs.append(x)
            x = torch.stack(outs).mean(0)
        else:
            x = run(torch.zeros(shape, device=dev), torch.zeros(b, device=dev))
        if known is not None:
            x = torch.where(mask, known, x)
        actions = self.unscale(x[:, past:])
        if prefix is not None:  # exactly the prefix, not its round trip through the scaling
            keep = mask[:, past : past + prefix.shape[1]]
            actions[:, : prefix.shape[1]] = torch.where(
                keep, prefix.to(actions.dtype), actions[:, : prefix.shape[1]]
            )
        return actions


__all__ = ["DiffusionPolicy", "NoiseSchedule", "ConditionalUnet1D", "cosine_betas"]
