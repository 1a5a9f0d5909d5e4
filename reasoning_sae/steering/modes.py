"""The names steering settings accept (torch-free, so configs are checked before anything heavy imports)."""

MODES = ("add", "clamp")  # add: paper Eq. 7; clamp: the released code
POSITIONS = ("all", "prompt", "generated")
SITES = ("resid_post", "mlp_out")  # where clamp reads f_i
VECTORS = ("diffmean",)  # steering vectors in place of SAE features: diffmean, the score stage's difference of means
