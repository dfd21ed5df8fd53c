"""SecAgg+ (Bell et al., CCS 2020) for fedpriv: the server learns only the sum of the updates.

The primitives and the shared protocol rules live here (core layer: ``cryptography`` and numpy
only); the per-side state machines are ``client/secagg.py`` (device) and ``strategies/secagg.py``
(server), with no I/O of their own.

* ``crypto``: X25519, HKDF-SHA256, AES-256-GCM, SHA-256 commitments;
* ``masks``: AES-256-CTR-expanded masks, uniform in Z_(2^k);
* ``shamir``: secret sharing over F_(2^127 − 1);
* ``layout``: how a dict of update tensors becomes the summed vector;
* ``graph``: the sparse k-regular (Harary) communication graph, degree and threshold, with the
  correctness and security conditions;
* ``quantization``: clipping range, grid, weight and the stated error bound;
* ``protocol``: key derivations, associated data, commitments, vector packing;
* ``messages``: the typed payload of every stage, as ConfigRecord-ready dicts.

Four stages per round: setup (advertise keys), share-keys, masked-input, unmask. Each client masks
(w_i·q_i, w_i) with a self mask and with pairwise masks against its graph neighbours; the pairwise
masks cancel in the sum; the server removes the self masks of survivors and the pairwise masks of
dropouts from Shamir shares held by neighbours, never learning both secrets of any node.
"""
