"""The generative strategy's two networks: a conditional VAE and a CFGAN-style conditional GAN.

Both read a profile (a bag of one-hot profile columns) and a bag of revealed items, and give
logits over the vocabulary through an ``ItemOutput`` layer (one weight row and one bias per
item). Each network owns its optimizer and one ``train_step(batch, beta, params)``; the
batches are built by ``trainer.GenerativeTrainer``.

Torch is optional (the ``ml`` extra): the module classes are built on first use by
``_modules()``, so importing this file never needs torch.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp

from ..torch_support import require_torch

MODELS = ("cvae", "cfgan")


def build_network(model: str, n_items: int, n_profile: int, hidden_dim: int, latent_dim: int, noise_dim: int,
                  item_log_prior: np.ndarray | None = None):
    """A fresh ``"cvae"`` or ``"cfgan"`` network over ``n_items`` vocabulary items.

    ``item_log_prior`` (log of each item's training share) initialises the output biases, so
    the untrained network already ranks by popularity and training learns what a profile or
    a history adds to it (see ``torch_support.log_prior``).
    """
    if model not in MODELS:
        raise ValueError(f"generative: model must be one of {MODELS}, got {model!r}")
    conditional_vae, conditional_gan = _modules()
    network_class = conditional_vae if model == "cvae" else conditional_gan
    network = network_class(n_items=n_items, n_profile=n_profile, hidden_dim=hidden_dim,
                            latent_dim=latent_dim, noise_dim=noise_dim)
    if item_log_prior is not None:
        torch = require_torch()
        with torch.no_grad():
            network.output.bias.copy_(torch.from_numpy(np.asarray(item_log_prior, dtype=np.float32)))
    return network


def normalise_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Scale each row to unit L2 norm (Mult-VAE's input normalisation); empty rows stay empty."""
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ matrix)


def sampled_log_likelihood(torch, hidden, output, batch):
    """Per-pair log p(item | user) under a (sampled) softmax over the vocabulary.

    With a full softmax the result is exact. Else the partition function of each user is
    estimated from the batch's shared negatives (logQ-corrected, the user's own items masked):
    log Z ≈ log(exp(s_pos) + Σ_k exp(s_k − log K·q_k)). The negatives' sum is per user, so a
    step costs users × K, not pairs × K.
    """
    pair_user, pair_item = batch["pair_user"], batch["pair_item"]
    negative_items, log_q = batch["negatives"]
    if batch["full_softmax"]:
        return torch.log_softmax(output.logits(hidden), dim=1)[pair_user, pair_item]
    negative_logits = (output.logits(hidden, negative_items) - log_q).masked_fill(batch["hit"], -1e9)
    negative_mass = torch.logsumexp(negative_logits, dim=1)
    positive = output.pair_logits(hidden, pair_user, pair_item)
    return positive - torch.logaddexp(positive, negative_mass[pair_user])


@functools.cache
def _modules():
    """Build the torch module classes once, on first use, so importing this file never needs torch."""
    torch = require_torch()
    nn = torch.nn

    class ItemOutput(nn.Module):
        """Output layer over the vocabulary: one weight row and bias per item."""

        def __init__(self, n_items, hidden_dim):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n_items, hidden_dim) * 0.01)
            self.bias = nn.Parameter(torch.zeros(n_items))

        def logits(self, hidden, items=None):
            """(users, items) logits over the vocabulary, or over item indices ``items``."""
            if items is None:
                return hidden @ self.weight.T + self.bias
            return hidden @ self.weight[items].T + self.bias[items]

        def pair_logits(self, hidden, pair_user, pair_item):
            """Logit of item ``pair_item[j]`` for user ``pair_user[j]``."""
            return (hidden[pair_user] * self.weight[pair_item]).sum(1) + self.bias[pair_item]

    class ConditionalVAE(nn.Module):
        """q(z | x, c) from the revealed items and the profile; p(x | z, c) a multinomial over items."""

        def __init__(self, n_items, n_profile, hidden_dim, latent_dim, noise_dim):
            super().__init__()
            self.item_input = nn.EmbeddingBag(n_items, hidden_dim, mode="sum")
            self.profile_input = nn.EmbeddingBag(n_profile, hidden_dim, mode="sum")
            self.to_latent = nn.Linear(hidden_dim, 2 * latent_dim)
            self.decoder_profile = nn.EmbeddingBag(n_profile, hidden_dim, mode="sum")
            self.decoder_latent = nn.Linear(latent_dim, hidden_dim)
            self.output = ItemOutput(n_items, hidden_dim)
            self.latent_dim = latent_dim
            # The fused kernel updates all parameters in one pass (much cheaper on CPU).
            self.optimizer = torch.optim.Adam(self.parameters(), lr=1e-3, fused=True)

        def encode(self, profile, history):
            indices, offsets, weights = history
            hidden = torch.tanh(self.item_input(indices, offsets, per_sample_weights=weights) + self.profile_input(*profile))
            mean, log_variance = self.to_latent(hidden).chunk(2, dim=1)
            return mean, log_variance

        def decode(self, latent, profile):
            return torch.tanh(self.decoder_latent(latent) + self.decoder_profile(*profile))

        def output_hidden(self, profile, history):
            mean, _ = self.encode(profile, history)
            return self.decode(mean, profile)

        def score(self, profile, history):
            return self.output.logits(self.output_hidden(profile, history))

        def sample_log_probabilities(self, profile):
            # z from q(z | no items, c): with a small KL weight the aggregate posterior is far
            # from N(0, I), so the profile-conditioned posterior is the better sampler.
            n_rows = len(profile[1])
            empty = (torch.zeros(0, dtype=torch.long), torch.zeros(n_rows, dtype=torch.long), torch.zeros(0))
            mean, log_variance = self.encode(profile, empty)
            latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
            return torch.log_softmax(self.output.logits(self.decode(latent, profile)), dim=1)

        def train_step(self, batch, beta, params):
            for group in self.optimizer.param_groups:
                group["lr"] = float(params["learning_rate"])
            mean, log_variance = self.encode(batch["profile"], batch["input"])
            latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
            hidden = self.decode(latent, batch["profile"])
            log_likelihood = sampled_log_likelihood(torch, hidden, self.output, batch)
            n_users = batch["n_users"]
            reconstruction = -log_likelihood.sum() / n_users
            kl = -0.5 * torch.sum(1 + log_variance - mean.pow(2) - log_variance.exp()) / n_users
            loss = reconstruction + beta * kl
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            return float(loss.detach())

    class ConditionalGAN(nn.Module):
        """G(c, x̃, noise) → purchase vector; D(x ⊙ mask, c) → real or generated."""

        def __init__(self, n_items, n_profile, hidden_dim, latent_dim, noise_dim):
            super().__init__()
            self.noise_dim = noise_dim
            self.g_history = nn.EmbeddingBag(n_items, hidden_dim, mode="sum")
            self.g_profile = nn.EmbeddingBag(n_profile, hidden_dim, mode="sum")
            self.g_noise = nn.Linear(noise_dim, hidden_dim)
            self.g_hidden = nn.Linear(hidden_dim, hidden_dim)
            self.g_output = ItemOutput(n_items, hidden_dim)
            self.d_items = nn.Parameter(torch.randn(n_items, hidden_dim) * 0.01)
            self.d_profile = nn.EmbeddingBag(n_profile, hidden_dim, mode="sum")
            self.d_output = nn.Linear(hidden_dim, 1)
            generator = [p for name, p in self.named_parameters() if name.startswith("g_")]
            discriminator = [p for name, p in self.named_parameters() if name.startswith("d_")]
            self.g_optimizer = torch.optim.Adam(generator, lr=1e-3, fused=True)
            self.d_optimizer = torch.optim.Adam(discriminator, lr=1e-3, fused=True)

        def generator_hidden(self, profile, history, noise):
            indices, offsets, weights = history
            first = self.g_history(indices, offsets, per_sample_weights=weights) + self.g_profile(*profile) + self.g_noise(noise)
            return torch.tanh(self.g_hidden(torch.tanh(first)))

        @property
        def output(self):
            return self.g_output

        def output_hidden(self, profile, history):
            return self.generator_hidden(profile, history, torch.zeros(len(profile[1]), self.noise_dim))

        def score(self, profile, history):
            return self.g_output.logits(self.output_hidden(profile, history))

        def sample_log_probabilities(self, profile):
            n_rows = len(profile[1])
            empty = (torch.zeros(0, dtype=torch.long), torch.zeros(n_rows, dtype=torch.long), torch.zeros(0))
            logits = self.g_output.logits(self.generator_hidden(profile, empty, torch.randn(n_rows, self.noise_dim)))
            return torch.log_softmax(logits, dim=1)

        def discriminate(self, profile, pair_user, pair_item, values, n_users):
            summed = torch.zeros(n_users, self.d_items.shape[1]).index_add_(0, pair_user, values[:, None] * self.d_items[pair_item])
            return self.d_output(torch.nn.functional.leaky_relu(summed + self.d_profile(*profile), 0.2)).squeeze(1)

        def train_step(self, batch, beta, params):
            for optimizer in (self.g_optimizer, self.d_optimizer):
                for group in optimizer.param_groups:
                    group["lr"] = float(params["learning_rate"])
            n_users = batch["n_users"]
            negative_items, _ = batch["negatives"]
            # Partial masking: D sees the user's items plus sampled negatives that are not theirs.
            negative_user, negative_column = torch.nonzero(~batch["hit"], as_tuple=True)
            pair_user = torch.cat([batch["pair_user"], negative_user])
            pair_item = torch.cat([batch["pair_item"], negative_items[negative_column]])
            is_positive = torch.cat([torch.ones(len(batch["pair_user"])), torch.zeros(len(negative_user))])
            hidden = self.generator_hidden(batch["profile"], batch["input"], torch.randn(n_users, self.noise_dim))
            generated = torch.sigmoid((hidden[pair_user] * self.g_output.weight[pair_item]).sum(1) + self.g_output.bias[pair_item])
            bce = torch.nn.functional.binary_cross_entropy_with_logits
            real_logit = self.discriminate(batch["profile"], pair_user, pair_item, is_positive, n_users)
            fake_logit = self.discriminate(batch["profile"], pair_user, pair_item, generated.detach(), n_users)
            d_loss = bce(real_logit, torch.ones(n_users)) + bce(fake_logit, torch.zeros(n_users))
            self.d_optimizer.zero_grad()
            d_loss.backward()
            self.d_optimizer.step()
            fake_logit = self.discriminate(batch["profile"], pair_user, pair_item, generated, n_users)
            zero_reconstruction = (generated[len(batch["pair_user"]):] ** 2).sum() / n_users
            g_loss = bce(fake_logit, torch.ones(n_users)) + float(params["zero_reconstruction"]) * zero_reconstruction
            self.g_optimizer.zero_grad()
            g_loss.backward()
            self.g_optimizer.step()
            return float(g_loss.detach())

    return ConditionalVAE, ConditionalGAN
