"""The behavior strategy's network: a small causal Transformer over (profile, events).

Item representations are tied between input and output: a learned id embedding (row 0, the
shared zero row, for items without training interactions) plus a projection of the item's
content vector, and one bias per item (a shared ``cold_bias`` for items without an id). A
product never seen in training therefore gets a real score from its text.

``make_network`` takes the ``torch`` module as an argument and defines the class inside, so
that importing this file never needs torch (it is an optional dependency).
"""

from __future__ import annotations

from .tokens import N_DWELL_BUCKETS, N_EVENT_CODES


def make_network(torch, n_ids, n_profile, content_dim, model_dim, heads, layers, feedforward_dim, dropout,
                 max_positions, id_log_prior=None, cold_log_prior=None):
    """Build the Transformer; ``torch`` is passed in, so this module imports without torch.

    ``id_log_prior`` (log training share of the items of id rows 1…, ``torch_support.log_prior``)
    and ``cold_log_prior`` initialise the item biases, so the untrained network's item scores
    start from popularity instead of from zero.
    """
    nn = torch.nn

    class BehaviorTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.n_ids = n_ids
            self.id_embedding = nn.Embedding(n_ids, model_dim, padding_idx=0)
            nn.init.normal_(self.id_embedding.weight, std=0.02)
            with torch.no_grad():
                self.id_embedding.weight[0].zero_()
            self.id_bias = nn.Embedding(n_ids, 1, padding_idx=0)
            nn.init.zeros_(self.id_bias.weight)
            self.cold_bias = nn.Parameter(torch.zeros(1))
            self.content_projection = nn.Linear(content_dim, model_dim, bias=False)
            self.event_embedding = nn.Embedding(N_EVENT_CODES, model_dim)
            self.dwell_embedding = nn.Embedding(N_DWELL_BUCKETS, model_dim)
            self.position_embedding = nn.Embedding(max_positions, model_dim)
            self.profile_projection = nn.EmbeddingBag(n_profile, model_dim, mode="sum")
            for embedding in (self.event_embedding, self.dwell_embedding, self.position_embedding, self.profile_projection):
                nn.init.normal_(embedding.weight, std=0.02)
            layer = nn.TransformerEncoderLayer(model_dim, heads, feedforward_dim, dropout, batch_first=True, norm_first=True)
            self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.final_norm = nn.LayerNorm(model_dim)

        def items(self, items, tables, id_keep=None):
            """Representation (tied input/output) and bias of item positions ``items``."""
            id_rows = tables["id_rows"][items]
            representation = self.id_embedding(id_rows)
            if id_keep is not None:
                representation = representation * id_keep[id_rows][:, None]
            representation = representation + self.content_projection(tables["content"][items])
            bias = torch.where(id_rows > 0, self.id_bias(id_rows).squeeze(1), self.cold_bias)
            return representation, bias

        def sequence(self, profile, tokens, tables, id_keep=None):
            """Hidden state at every position: the profile token, then each event."""
            items = tokens["items"]
            n_rows, width = items.shape
            item_positions = (items - 1).clamp(min=0)
            representation, _ = self.items(item_positions.reshape(-1), tables, id_keep)
            events = (representation.reshape(n_rows, width, representation.shape[-1]) * (items > 0)[..., None]
                      + self.event_embedding(tokens["events"]) + self.dwell_embedding(tokens["dwell"]))
            sequence = torch.cat([self.profile_projection(*profile)[:, None, :], events], dim=1)
            sequence = sequence + self.position_embedding(torch.arange(width + 1))[None]
            causal = nn.Transformer.generate_square_subsequent_mask(width + 1)
            return self.final_norm(self.transformer(sequence, mask=causal, is_causal=True))

        def readout(self, profile, tokens, tables):
            """Hidden state after each context's last known event (the profile token if none)."""
            hidden = self.sequence(profile, tokens, tables)
            return hidden[torch.arange(hidden.shape[0]), tokens["lengths"]]

    network = BehaviorTransformer()
    with torch.no_grad():
        if id_log_prior is not None:
            network.id_bias.weight[1:, 0] = torch.as_tensor(id_log_prior, dtype=torch.float32)
        if cold_log_prior is not None:
            network.cold_bias.fill_(float(cold_log_prior))
    return network
