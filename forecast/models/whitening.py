"""Spatial whitening of gridded fields by their training power spectrum.

A diffusion model whose network has not learnt the spatial correlation of its target returns
members whose departure from the mean is close to grid-point white noise (the starting noise
the network did not remove). Diffusing in whitened coordinates instead maps the same leftover
noise to fields with the training data's spatial correlation. Per variable and lead, on a
``lat x lon`` grid, with ``D`` the orthonormal 2-D DCT-II (:func:`scipy.fft.dct`), ``P`` the
mean power of each DCT mode over the training fields and ``s`` the standard deviation by point
of white noise coloured by ``P``:

- colour: ``x = D^T (sqrt(P) * D y) / s``, so coloured white noise ``N(0, I)`` has the
  training fields' correlation and unit variance at every point (the variance by point stays
  the job of the model's own scaling, ``scale_points``; without ``/ s`` the DCT's even
  extension would give the border points up to twice the interior's variance for a red
  spectrum);
- whiten, its inverse: ``y = D^T (D (s * x) / sqrt(P))``.

The map is linear and invertible, so the latent space, inversion and slerp paths keep their
meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from forecast.errors import ForecastError

#: Floor on the normalized power of a DCT mode (the mean over modes is 1), so that modes with
#: almost no training power are not amplified without bound by whitening.
POWER_FLOOR = 1e-3
#: Passes of the fit: the spectrum of the fields, then of the fields times the standard
#: deviation by point that the previous spectrum gives coloured white noise.
FIT_PASSES = 3


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``D`` ``(n, n)``: ``D @ x`` are the coefficients of ``x``."""
    from scipy.fft import dct

    return dct(np.eye(n), norm="ortho", axis=0)


@dataclass
class SpectralWhitener:
    """Whitening by the training power of the 2-D DCT modes, per variable and lead.

    ``power`` ``(channel, lead, n_lat, n_lon)``: mean squared DCT coefficient of the training
    fields, normalized to mean 1 per (channel, lead) and floored at :data:`POWER_FLOOR`.
    """

    power: np.ndarray
    #: Tensor copies of the fixed arrays, by (name, dtype, device): built once, not per call.
    _tensors: dict[tuple[str, torch.dtype, str], torch.Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.power = np.asarray(self.power, dtype=np.float64)
        if self.power.ndim != 4 or not np.all(np.isfinite(self.power)) or self.power.min() <= 0:
            raise ForecastError(
                "spectral whitening power must be a finite, positive (channel, lead, lat, lon) "
                f"array, got shape {self.power.shape}; refit the model"
            )
        self._dl = dct_matrix(self.power.shape[2])
        self._dn = dct_matrix(self.power.shape[3])
        #: Standard deviation by point of white noise coloured by the spectrum (before the
        #: division by it): ``sum_kl D[k, i]^2 D[l, j]^2 power[k, l]``, square-rooted.
        self.point_std = np.sqrt(
            np.einsum("ki,chkl,lj->chij", self._dl**2, self.power, self._dn**2)
        )

    @classmethod
    def fit(cls, x: torch.Tensor) -> SpectralWhitener:
        """Fit on training fields ``x`` ``(window, channel, lead, n_lat, n_lon)``."""
        if x.ndim != 5:
            raise ForecastError(
                f"spatial whitening needs gridded (window, channel, lead, lat, lon) fields, got "
                f"{x.ndim} dims; use it on a lat/lon grid only"
            )
        xs = x.detach().double().cpu().numpy()
        dl, dn = dct_matrix(xs.shape[3]), dct_matrix(xs.shape[4])
        std = np.ones(xs.shape[1:])
        for _ in range(FIT_PASSES):  # the spectrum of x * point_std, point_std from the spectrum
            coeff = np.einsum("ki,bchij,lj->bchkl", dl, xs * std, dn)
            power = np.mean(coeff**2, axis=0)
            power = power / power.mean(axis=(2, 3), keepdims=True).clip(min=1e-12)
            fitted = cls(np.maximum(power, POWER_FLOOR))
            std = fitted.point_std
        return fitted

    def _like(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The fixed array ``name`` as a tensor of ``x``'s dtype and device (cached)."""
        key = (name, x.dtype, str(x.device))
        if key not in self._tensors:
            arrays = {
                "dl": self._dl,
                "dn": self._dn,
                "point_std": self.point_std,
                "gain": np.sqrt(self.power),
                "inverse_gain": 1.0 / np.sqrt(self.power),
            }
            self._tensors[key] = torch.as_tensor(arrays[name], dtype=x.dtype, device=x.device)
        return self._tensors[key]

    def _check_shape(self, x: torch.Tensor) -> None:
        shape = tuple(self.power.shape)
        if x.ndim != 5 or tuple(x.shape[1:]) != shape:
            raise ForecastError(
                f"fields of shape {tuple(x.shape[1:])} do not match the whitening spectrum "
                f"{shape}; use the data set the model was trained on"
            )

    def _filter(self, x: torch.Tensor, gain: str) -> torch.Tensor:
        """Multiply the DCT coefficients of ``x`` by the array ``gain`` and go back to the grid."""
        dl, dn = self._like("dl", x), self._like("dn", x)
        coeff = torch.einsum("ki,bchij,lj->bchkl", dl, x, dn) * self._like(gain, x)
        return torch.einsum("ki,bchkl,lj->bchij", dl, coeff, dn)

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        """Whitened fields of ``x`` ``(batch, channel, lead, n_lat, n_lon)``."""
        self._check_shape(x)
        return self._filter(x * self._like("point_std", x), "inverse_gain")

    def colour(self, y: torch.Tensor) -> torch.Tensor:
        """Fields of the whitened ``y`` (the inverse of :meth:`whiten`)."""
        self._check_shape(y)
        return self._filter(y, "gain") / self._like("point_std", y)
