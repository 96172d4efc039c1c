"""A dense reference for the streaming cache: one forward over all frames of a rollout.

Each query frame sees each key frame in up to two *roles* (as block/window context, and as the
anchor), each role with its own mask and its own frame distance. Scores are computed per distinct
distance by rotating queries to that distance and keys to 0 — the definition of relative RoPE —
then one softmax runs over all roles together. Written independently of `AnchorWindowCache`:
no deque, no slots, no position layout, only who-sees-whom at which distance.
"""

import torch

from adastate.model.transformer import apply_rotary


class RoleAttention:
    def __init__(self, rope, roles, height: int, width: int):
        self.rope, self.roles, self.height, self.width = rope, roles, height, width
        self.tokens_per_frame = height * width

    def _expand(self, frame_matrix):
        t = self.tokens_per_frame
        return frame_matrix.repeat_interleave(t, 0).repeat_interleave(t, 1)

    def __call__(self, layer, q, k, v):
        n_frames = q.shape[1] // self.tokens_per_frame
        zero = torch.zeros(n_frames)
        k_rot = apply_rotary(k, *self.rope(zero, self.height, self.width)).transpose(1, 2)
        scores = []
        for mask, distance in self.roles:
            role_scores = torch.full((q.shape[0], q.shape[2], q.shape[1], k.shape[1]), float("-inf"))
            token_mask, token_distance = self._expand(mask), self._expand(distance)
            for d in torch.unique(distance[mask]).tolist():
                q_rot = apply_rotary(q, *self.rope(torch.full((n_frames,), float(d)), self.height, self.width))
                s = q_rot.transpose(1, 2) @ k_rot.transpose(-1, -2) / q.shape[-1] ** 0.5
                where = token_mask & (token_distance == d)
                role_scores = torch.where(where, s, role_scores)
            scores.append(role_scores)
        weights = torch.softmax(torch.cat(scores, dim=-1), dim=-1).split(k.shape[1], dim=-1)
        out = sum(w @ v.transpose(1, 2) for w in weights)
        return out.transpose(1, 2)


def rollout_roles(chunks: int, chunk_frames: int, anchor_frames: int, window_chunks: int, adaptive: bool):
    """Roles for a rollout laid out as [S_0 X_0 S_1 X_1 ...] (adaptive) or [X_0 X_1 ...] (static).

    Distances follow from time alone: inside a block and across the window they are plain frame
    differences in absolute time; the anchor sits at a fixed distance behind each block — the state's
    own slot (distance 0 to the new state) — instead of receding.
    """
    state = anchor_frames if adaptive else 0
    per_chunk = state + chunk_frames
    n = chunks * per_chunk
    context = torch.zeros(n, n, dtype=torch.bool)
    anchor = torch.zeros(n, n, dtype=torch.bool)
    distance = torch.zeros(n, n, dtype=torch.long)
    anchor_distance = torch.zeros(n, n, dtype=torch.long)

    def time_of(frame):  # absolute time of a frame; a state frame sits at its anchor position
        chunk, j = divmod(frame, per_chunk)
        if j < state:
            return chunk * chunk_frames - window_chunks * chunk_frames - anchor_frames + j
        return chunk * chunk_frames + (j - state)

    for qf in range(n):
        qc = qf // per_chunk
        for kf in range(n):
            kc, kj = divmod(kf, per_chunk)
            is_content = kj >= state
            if kc == qc or (is_content and qc - window_chunks <= kc < qc):
                context[qf, kf] = True
                distance[qf, kf] = time_of(qf) - time_of(kf)
            is_anchor = (adaptive and kc == qc - 1 and kj < state) or \
                        (not adaptive and qc >= 1 and kc == 0 and kj < anchor_frames)
            if is_anchor:
                anchor[qf, kf] = True
                # the anchor slot holds positions 0..A-1 of a layout whose content starts at A + W*F
                anchor_distance[qf, kf] = time_of(qf) - (qc * chunk_frames - window_chunks * chunk_frames - anchor_frames + kj)
    return [(context, distance), (anchor, anchor_distance)]
