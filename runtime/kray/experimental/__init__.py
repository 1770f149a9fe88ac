"""kray.experimental: Ray's experimental helpers that programs import (tqdm_ray)."""
