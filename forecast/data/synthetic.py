"""Synthetic data sets with real space-time structure: the embedded default of the package.

Two generators, deterministic given ``seed``, vectorized numpy, a second or two each:

- :func:`synthetic_weather`: an hourly 2 m temperature-like field (K) on a lat/lon grid, from a
  stochastic advection-diffusion model on top of a seasonal, meridional and diurnal mean state.
- :func:`synthetic_traffic`: 5-minute speeds (mph) on a road network of sensors along corridors,
  with rush-hour demand, queues that grow upstream from bottlenecks, congestion waves travelling
  upstream, random incidents and noise, plus a Gaussian-kernel adjacency matrix like Los-loop.

Both return the standard data set of ``docs/architecture.md`` (dims from :mod:`forecast.dims`,
``units`` on every variable). The future of either is uncertain given its past (random forcing,
random incidents, random wave sources), so forecasting them is genuinely probabilistic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from forecast.dims import ADJACENCY, LAT, LON, NODE, NODE_J, TIME
from forecast.errors import ForecastError

__all__ = ["synthetic_traffic", "synthetic_weather"]

KM_PER_DEG = 111.2


def _check_positive(**kwargs: float) -> None:
    for name, value in kwargs.items():
        if not value > 0:
            raise ForecastError(f"{name} must be positive, got {value!r}; pass a value > 0")


def _ou(
    rng: np.random.Generator, n: int, dt: float, tau: float, std: float, width: int | None = None
) -> np.ndarray:
    """Stationary Ornstein-Uhlenbeck path(s) along axis 0: ``n`` steps of ``dt``, std ``std``,
    time scale ``tau``; ``width`` independent columns if given."""
    phi = np.exp(-dt / tau)
    shape = (n,) if width is None else (n, width)
    eps = rng.standard_normal(shape) * std * np.sqrt(1.0 - phi**2)
    eps[0] = rng.standard_normal(shape[1:]) * std
    return _recursive_filter(eps, (phi,))


def _ar2(r: float, theta: float, eps: np.ndarray) -> np.ndarray:
    """AR(2) filter with poles at ``r * exp(+-i theta)`` (damped oscillation) driven by ``eps``."""
    return _recursive_filter(eps, (2 * r * np.cos(theta), -r * r))


def _recursive_filter(eps: np.ndarray, coef: tuple[float, ...]) -> np.ndarray:
    """``y[t] = eps[t] + sum_k coef[k] * y[t-1-k]`` along axis 0 (an all-pole filter).

    A plain loop over time with vector operations across columns: a few milliseconds for the
    series here, and it spares importing ``scipy.signal`` (about 0.8 s) at start-up.
    """
    y = np.array(eps, dtype=np.float64, copy=True)
    for t in range(1, y.shape[0]):
        acc = coef[0] * y[t - 1]
        for k in range(1, min(len(coef), t)):
            acc = acc + coef[k] * y[t - 1 - k]
        y[t] += acc
    return y


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Unit-variance periodic Gaussian random field with correlation length ``scale`` (cells)."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    g = np.exp(-2.0 * (np.pi * scale) ** 2 * (kx**2 + ky**2))
    field = np.fft.ifft2(g * np.fft.fft2(rng.standard_normal(shape))).real
    return field / field.std()


def synthetic_weather(
    seed: int = 0,
    n_lat: int = 32,
    n_lon: int = 48,
    days: float = 90,
    *,
    start: str = "2021-01-01",
    lat_range: tuple[float, float] = (50.0, 58.0),
    lon_range: tuple[float, float] = (-10.0, 2.0),
    mean_wind: tuple[float, float] = (8.0, 0.0),
    wind_std: float = 4.0,
    wind_tau_h: float = 48.0,
    diffusivity: float = 20.0,
    damping_h: float = 96.0,
    anomaly_std: float = 3.0,
    forcing_scale_km: float = 150.0,
    system_rate_per_day: float = 0.5,
    system_amplitude: float = 4.0,
    spinup_days: float = 10.0,
) -> xr.Dataset:
    r"""Hourly temperature-like field ``t2m`` (K) from a stochastic advection-diffusion model.

    The field is a mean state plus an anomaly :math:`a`:

    .. math::

        T(t, \phi, \lambda) = \bar T(t, \phi) - 1.5\,m(\phi,\lambda)
            + A(t, \phi, m)\cos\!\Big(2\pi\,\frac{h_{\mathrm{loc}}(t,\lambda) - 15}{24}\Big)
            + a(t, \phi, \lambda)

    - :math:`\bar T = 283 - 0.7(\phi - \phi_c) - 6\cos(2\pi(d - 15)/365)` K: a meridional
      gradient (colder north) and the seasonal cycle in day of year :math:`d` (coldest mid-Jan.).
    - :math:`m \in [0, 1]`: a smooth random land fraction (land-sea mask), fixed per seed.
    - Diurnal cycle at local solar hour :math:`h_{\mathrm{loc}} = h_{\mathrm{UTC}} + \lambda/15`,
      peak at 15 h, amplitude :math:`A = (0.6 + 3.4m)(1 - 0.03(\phi - \phi_c))
      (1 + 0.4\sin(2\pi(d - 80)/365))` K: large over land, small over sea, larger to the south
      and towards spring.
    - The anomaly follows
      :math:`\partial_t a + \mathbf u(t, \phi)\cdot\nabla a = \kappa\nabla^2 a - a/\tau
      + \sigma\,\xi + S`
      with a spatially uniform wind :math:`\mathbf u(t) = \bar{\mathbf u} + \mathbf u'(t)` whose
      deviations :math:`\mathbf u'` are Ornstein-Uhlenbeck processes (std ``wind_std``, time scale
      ``wind_tau_h``) plus a meridional shear of the zonal wind (+-3 m/s across the domain),
      diffusivity :math:`\kappa` = ``diffusivity`` km^2/h, damping time :math:`\tau` =
      ``damping_h``, white-in-time forcing :math:`\xi` with a Gaussian spatial correlation of
      length ``forcing_scale_km`` and :math:`\sigma = s\sqrt{2/\tau}` so that the stationary
      anomaly std is about :math:`s` = ``anomaly_std`` K. :math:`S` injects weather systems:
      Gaussian blobs (radius 200-400 km, amplitude N(0, ``system_amplitude``) K spread over
      12 h) born as a Poisson process of ``system_rate_per_day``; they are then advected by the
      wind, diffuse and decay: moving warm and cold systems.

    Numerics, one step per hour: semi-Lagrangian advection (bilinear interpolation at the
    departure points), then diffusion and damping exactly in Fourier space
    (:math:`\hat a \leftarrow \hat a\,e^{-(\kappa k^2 + 1/\tau)\Delta t}`), then the forcing.
    The model runs on a periodic domain 1.5 times larger than the output grid in each direction
    (so wrap-around is far from the output) and ``spinup_days`` before ``start`` (so the anomaly
    is statistically stationary from the first step).

    Parameters
    ----------
    seed : int
        Seed of every random draw; the same seed gives an identical data set.
    n_lat, n_lon : int
        Grid size; latitudes ascending over ``lat_range``, longitudes over ``lon_range``.
    days : float
        Length; ``round(24 * days)`` hourly steps from ``start``.
    start : str
        First time stamp (UTC, no time zone).
    lat_range, lon_range : tuple of float
        The box in degrees north / east (default: the ERA5 UK box, 50..58 N, 10 W..2 E).
    mean_wind : tuple of float
        Mean (eastward, northward) wind in m/s.
    wind_std, wind_tau_h : float
        Std (m/s) and time scale (h) of the wind fluctuations.
    diffusivity : float
        Horizontal diffusivity in km^2/h.
    damping_h : float
        Damping time scale of anomalies in hours.
    anomaly_std : float
        Target stationary std of the forced anomaly in K (before weather systems).
    forcing_scale_km : float
        Spatial correlation length of the random forcing in km.
    system_rate_per_day, system_amplitude : float
        Poisson birth rate (per day, domain-wide) and amplitude std (K) of weather systems.
    spinup_days : float
        Simulated days discarded before ``start``.

    Returns
    -------
    xr.Dataset
        ``t2m`` over ``(time, lat, lon)`` in float32 with ``units="K"``.

    Examples
    --------
    >>> ds = synthetic_weather(seed=1, n_lat=8, n_lon=12, days=2)
    >>> dict(ds.sizes)
    {'time': 48, 'lat': 8, 'lon': 12}
    """
    _check_positive(
        n_lat=n_lat,
        n_lon=n_lon,
        days=days,
        damping_h=damping_h,
        wind_tau_h=wind_tau_h,
        forcing_scale_km=forcing_scale_km,
    )
    if n_lat < 2 or n_lon < 2:
        raise ForecastError(f"grid {n_lat}x{n_lon} is too small; use n_lat, n_lon >= 2")
    n_time = round(24 * days)
    if n_time < 1:
        raise ForecastError(f"days={days} gives no hourly step; use days >= 1/24")
    rng = np.random.default_rng(seed)
    lat = np.linspace(*lat_range, n_lat)
    lon = np.linspace(*lon_range, n_lon)
    lat_c = lat.mean()
    dy_km = (lat[1] - lat[0]) * KM_PER_DEG
    dx_km = (lon[1] - lon[0]) * KM_PER_DEG * np.cos(np.deg2rad(lat_c))

    # periodic simulation domain, 1.5 x the output grid; the output is its lower-left corner
    ny, nx = n_lat + max(2, n_lat // 2), n_lon + max(2, n_lon // 2)
    n_spin = round(24 * spinup_days)
    n_total = n_spin + n_time

    # wind (cells per hour): OU fluctuations around the mean, plus meridional shear of u
    u = mean_wind[0] + _ou(rng, n_total, 1.0, wind_tau_h, wind_std)
    v = mean_wind[1] + _ou(rng, n_total, 1.0, wind_tau_h, wind_std)
    shear = 3.0 * np.linspace(-1.0, 1.0, ny)[:, None]  # m/s, faster westerlies to the north
    ms_to_kmh = 3.6

    # spectral operators
    ky = 2 * np.pi * np.fft.fftfreq(ny, d=dy_km)[:, None]
    kx = 2 * np.pi * np.fft.fftfreq(nx, d=dx_km)[None, :]
    k2 = kx**2 + ky**2
    decay = np.exp(-(diffusivity * k2 + 1.0 / damping_h))
    g = np.exp(-0.5 * k2 * forcing_scale_km**2)
    g /= np.sqrt(np.mean(g**2))  # unit variance per grid point of the filtered white noise
    sigma = anomaly_std * np.sqrt(2.0 / damping_h)

    # weather systems: births (Poisson), position, radius, amplitude; injected over 12 h
    n_sys = rng.poisson(system_rate_per_day * n_total / 24)
    sys_t = rng.integers(0, n_total, n_sys)
    sys_y, sys_x = rng.uniform(0, ny, n_sys), rng.uniform(0, nx, n_sys)
    sys_r = rng.uniform(200.0, 400.0, n_sys)
    sys_a = rng.normal(0.0, system_amplitude, n_sys) / 12.0
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)

    iy, ix = np.mgrid[0:ny, 0:nx]
    a = _smooth_noise(rng, (ny, nx), forcing_scale_km / dx_km) * anomaly_std
    out = np.empty((n_time, n_lat, n_lon), dtype=np.float32)
    for n in range(n_total):
        # semi-Lagrangian advection: value at the departure point, bilinear, periodic
        yd = iy - v[n] * ms_to_kmh / dy_km
        xd = ix - (u[n] + shear) * ms_to_kmh / dx_km
        y0, x0 = np.floor(yd), np.floor(xd)
        fy, fx = yd - y0, xd - x0
        y0 = y0.astype(int) % ny
        x0 = x0.astype(int) % nx
        y1, x1 = (y0 + 1) % ny, (x0 + 1) % nx
        a = (1 - fy) * ((1 - fx) * a[y0, x0] + fx * a[y0, x1]) + fy * (
            (1 - fx) * a[y1, x0] + fx * a[y1, x1]
        )
        # diffusion + damping (exact in Fourier space) + spatially correlated forcing
        forcing = sigma * g * np.fft.fft2(rng.standard_normal((ny, nx)))
        a = np.fft.ifft2(np.fft.fft2(a) * decay + forcing).real
        # weather systems active now (each injected during 12 h after its birth)
        active = np.flatnonzero((sys_t <= n) & (n < sys_t + 12))
        for k in active:
            dyk = (yy - sys_y[k] + ny / 2) % ny - ny / 2
            dxk = (xx - sys_x[k] + nx / 2) % nx - nx / 2
            r2 = (dyk * dy_km) ** 2 + (dxk * dx_km) ** 2
            a = a + sys_a[k] * np.exp(-0.5 * r2 / sys_r[k] ** 2)
        if n >= n_spin:
            out[n - n_spin] = a[:n_lat, :n_lon]

    time = pd.date_range(start, periods=n_time, freq="h").as_unit("ns")
    doy = (time.day_of_year.to_numpy() + time.hour.to_numpy() / 24.0)[:, None, None]
    hour_utc = (time.hour.to_numpy() + time.minute.to_numpy() / 60.0)[:, None, None]
    land = 1.0 / (1.0 + np.exp(-_smooth_noise(rng, (n_lat, n_lon), max(n_lat, n_lon) / 6) / 0.3))
    dlat = (lat - lat_c)[None, :, None]
    mean = 283.0 - 0.7 * dlat - 6.0 * np.cos(2 * np.pi * (doy - 15) / 365.0) - 1.5 * land
    amp = (
        (0.6 + 3.4 * land) * (1 - 0.03 * dlat) * (1 + 0.4 * np.sin(2 * np.pi * (doy - 80) / 365.0))
    )
    local_hour = hour_utc + lon[None, None, :] / 15.0
    field = out + mean + amp * np.cos(2 * np.pi * (local_hour - 15.0) / 24.0)

    ds = xr.Dataset(
        {
            "t2m": (
                (TIME, LAT, LON),
                field.astype(np.float32),
                {
                    "units": "K",
                    "long_name": "2 metre temperature (synthetic)",
                    "standard_name": "air_temperature",
                },
            )
        },
        coords={
            TIME: time,
            LAT: (LAT, lat, {"units": "degrees_north", "standard_name": "latitude"}),
            LON: (LON, lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs={
            "title": "synthetic-weather: stochastic advection-diffusion temperature field",
            "source": "forecast.data.synthetic.synthetic_weather",
            "seed": int(seed),
        },
    )
    return ds


def _network(
    rng: np.random.Generator, n_sensors: int, n_corridors: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int], np.ndarray]:
    """Corridors as chains of sensors; feeders merge into the main corridor (corridor 0).

    Returns corridor id, position (km, increasing in the direction of flow), the index of the
    next sensor downstream (-1 at the end of the main corridor), the merge sensors on the main
    corridor, and the (x, y) km coordinates of every sensor.
    """
    if n_corridors < 1:
        raise ForecastError(f"n_corridors={n_corridors} must be >= 1")
    if n_sensors < 4 * n_corridors:
        raise ForecastError(
            f"n_sensors={n_sensors} is too small for {n_corridors} corridors; "
            f"use n_sensors >= {4 * n_corridors}"
        )
    n_main = n_sensors - (n_sensors * (n_corridors - 1)) // (n_corridors + 1)
    sizes = (
        [n_main] + [len(c) for c in np.array_split(np.arange(n_sensors - n_main), n_corridors - 1)]
        if n_corridors > 1
        else [n_sensors]
    )
    corridor = np.concatenate([np.full(s, c) for c, s in enumerate(sizes)])
    position = np.empty(n_sensors)
    downstream = np.full(n_sensors, -1)
    xy = np.empty((n_sensors, 2))
    merges: list[int] = []
    start = 0
    main_heading = rng.uniform(0, 2 * np.pi)
    for c, s in enumerate(sizes):
        idx = np.arange(start, start + s)
        gaps = rng.uniform(0.5, 1.2, s)
        gaps[0] = 0.0
        if c == 0:
            pos = np.cumsum(gaps)
            heading, origin = main_heading, np.zeros(2)
        else:
            # merge into the main corridor at a sensor in its middle part, from upstream
            m = int(rng.integers(n_main // 5, 4 * n_main // 5))
            merges.append(m)
            pos = np.cumsum(gaps)
            pos = pos - pos[-1] - rng.uniform(0.5, 1.0)  # last feeder sensor ~0.75 km before
            heading = main_heading + rng.choice([-1, 1]) * rng.uniform(0.6, 1.2)
            origin = xy[m]
            downstream[idx[-1]] = m
        position[idx] = pos
        downstream[idx[:-1]] = idx[1:]
        xy[idx] = origin + pos[:, None] * np.array([np.cos(heading), np.sin(heading)])
        start += s
    return corridor, position, downstream, merges, xy


def _upstream_distance(downstream: np.ndarray, position: np.ndarray, corridor: np.ndarray):
    """``d[s, b]``: road distance (km) from sensor s downstream to sensor b; inf if b is not
    downstream of s (a sensor is at distance 0 from itself)."""
    n = len(downstream)
    d = np.full((n, n), np.inf)
    for s in range(n):
        d[s, s] = 0.0
        cur, dist = s, 0.0
        while downstream[cur] >= 0:
            nxt = downstream[cur]
            step = (
                position[nxt] - position[cur]
                if corridor[nxt] == corridor[cur]
                else (
                    -position[cur]  # feeder end to the merge point: its position is negative
                )
            )
            dist += abs(step)
            d[s, nxt] = dist
            cur = nxt
    return d


def _queue(excess: np.ndarray, grow: float, shrink: float, l_max: float) -> np.ndarray:
    """Queue length (km) with dL/dt = grow * excess (excess > 0) or -shrink (excess <= 0)."""
    out = np.empty(len(excess))
    q = 0.0
    for k, e in enumerate(excess):
        q = min(l_max, q + grow * e) if e > 0 else max(0.0, q - shrink)
        out[k] = q
    return out


def synthetic_traffic(
    seed: int = 0,
    n_sensors: int = 80,
    days: float = 28,
    *,
    start: str = "2021-03-01",
    n_corridors: int = 4,
    step_minutes: int = 5,
    wave_speed_kmh: float = 18.0,
    incident_rate_per_day: float = 1.5,
    kernel_km: float = 2.0,
    kernel_threshold: float = 0.1,
    noise_mph: float = 1.5,
    center: tuple[float, float] = (34.05, -118.25),
) -> xr.Dataset:
    r"""5-minute speeds ``speed`` (mph) on a road network, with queues, waves and incidents.

    Network: ``n_corridors`` corridors of sensors 0.5-1.2 km apart; corridor 0 is the main road,
    the others are feeders that merge into it at random sensors of its middle part. Positions
    increase in the direction of flow; "upstream" is against the flow (and into the feeders).
    Road distances :math:`d_{ij}` are shortest paths on this graph; the adjacency is the
    Los-loop kernel :math:`W_{ij} = \exp(-(d_{ij}/\ell)^2)`, zero below ``kernel_threshold``,
    symmetric, ones on the diagonal (:math:`\ell` = ``kernel_km``).

    Speed at sensor :math:`s`, time :math:`t`:

    .. math::

        v_s(t) = v^{\mathrm{free}}_s\,(1 - 0.08\,D(t))\,(1 - C_s(t)) + \eta_s(t) + \epsilon_s(t)

    - Free-flow speed :math:`v^{\mathrm{free}}_s \sim U(60, 70)` mph.
    - Demand :math:`D(t) \in [0, 1]`: weekdays a morning peak (Gaussian, centre 07:45, sd 1 h)
      and an evening peak (17:30, sd 1.3 h) on a day-time base; weekends one broad, weaker
      midday bump (13:30, sd 3 h, height 0.45); each day scaled by a random factor
      :math:`\exp(N(0, 0.08^2))`. Each bottleneck weighs the two weekday peaks with its own
      morning/evening preference (inbound / outbound roads).
    - Recurrent bottlenecks at the merges and at one sensor in the downstream half of each
      feeder (a single corridor: one sensor in its downstream half), capacity
      :math:`c_b \sim U(0.55, 0.75)`: a queue of length :math:`L_b` (km) grows at
      :math:`6\,(D_b(t) - c_b)` km/h while demand exceeds capacity, and dissolves at 3 km/h
      otherwise (at most 8 km). Its tail therefore moves upstream when it grows.
    - Incidents: a Poisson process (``incident_rate_per_day`` over the network) at random sensors,
      duration :math:`10 + \mathrm{Exp}(30)` min, severity :math:`U(0.4, 0.8)`; during it a
      queue grows upstream at 4 km/h times severity and then dissolves at 3 km/h.
    - Congestion :math:`C_s = \max_q \mathrm{sev}_q\,\sigma((L_q(t) - d_{sq})/0.25)
      (1 + 0.3 z_q(t - d_{sq}/w))`, clipped to [0, 0.92], over queues :math:`q` downstream
      of :math:`s` (:math:`d_{sq}` the road distance, :math:`\sigma` the logistic function).
      :math:`z_q` is a unit-variance quasi-periodic AR(2) process (period about 30 min):
      stop-and-go waves that start at the bottleneck and travel upstream at
      :math:`w` = ``wave_speed_kmh``, so the downstream sensor leads the upstream ones.
    - :math:`\eta_s`: slow per-sensor AR(1) drift (sd 1.5 mph, 1 h time scale);
      :math:`\epsilon_s \sim N(0, \mathrm{noise\_mph}^2)` i.i.d.; speeds clipped to [3, 80].

    Parameters
    ----------
    seed : int
        Seed of every random draw (network layout included).
    n_sensors : int
        Number of sensors (>= 4 per corridor).
    days : float
        Length; ``round(days * 24 * 60 / step_minutes)`` steps from ``start``.
    start : str
        First time stamp (local time, no time zone; default a Monday).
    n_corridors : int
        Number of corridors (1 main + feeders).
    step_minutes : int
        Sampling step in minutes.
    wave_speed_kmh : float
        Upstream propagation speed of congestion waves.
    incident_rate_per_day : float
        Mean number of incidents per day over the network.
    kernel_km, kernel_threshold : float
        Length scale and threshold of the Gaussian adjacency kernel.
    noise_mph : float
        Std of the i.i.d. measurement noise.
    center : tuple of float
        (lat, lon) of the main corridor's first sensor; positions are placed around it.

    Returns
    -------
    xr.Dataset
        ``speed`` over ``(time, node)`` float32 with ``units="mph"``; ``adjacency`` over
        ``(node, node_j)``; node coords: sensor ids (strings), ``lat``, ``lon``, ``corridor``,
        ``position_km``. ``attrs["bottlenecks"]``: sensor ids of the recurrent bottlenecks.

    Examples
    --------
    >>> ds = synthetic_traffic(seed=1, n_sensors=12, days=1, n_corridors=2)
    >>> dict(ds.sizes)
    {'time': 288, 'node': 12, 'node_j': 12}
    """
    _check_positive(
        n_sensors=n_sensors,
        days=days,
        step_minutes=step_minutes,
        wave_speed_kmh=wave_speed_kmh,
        kernel_km=kernel_km,
    )
    if incident_rate_per_day < 0:
        raise ForecastError("incident_rate_per_day must be >= 0")
    n_time = round(days * 24 * 60 / step_minutes)
    if n_time < 1:
        raise ForecastError(f"days={days} gives no step of {step_minutes} min; use more days")
    rng = np.random.default_rng(seed)
    dt_h = step_minutes / 60.0
    corridor, position, downstream, merges, xy = _network(rng, n_sensors, n_corridors)
    d_up = _upstream_distance(downstream, position, corridor)

    time = pd.date_range(start, periods=n_time, freq=f"{step_minutes}min").as_unit("ns")
    hour = time.hour.to_numpy() + time.minute.to_numpy() / 60.0
    weekend = time.day_of_week.to_numpy() >= 5
    day_idx = ((time - time[0].normalize()) // pd.Timedelta("1D")).to_numpy()
    day_factor = np.exp(rng.normal(0.0, 0.08, day_idx.max() + 1))[day_idx]

    def bump(center_h: float, sd_h: float) -> np.ndarray:
        return np.exp(-0.5 * ((hour - center_h) / sd_h) ** 2)

    base = 0.35 * bump(13.0, 4.5)
    am, pm = bump(7.75, 1.0), bump(17.5, 1.3)
    weekend_demand = 0.45 * bump(13.5, 3.0)

    def demand(w_am: float, w_pm: float) -> np.ndarray:
        weekday = base + w_am * am + w_pm * pm
        return np.clip(np.where(weekend, weekend_demand, weekday) * day_factor, 0.0, 1.2)

    d_mean = demand(0.6, 0.6)
    free = rng.uniform(60.0, 70.0, n_sensors)

    # queue sources: (sensor, queue length over time, severity)
    sources: list[tuple[int, np.ndarray, float]] = []
    feeders = [np.flatnonzero(corridor == c) for c in range(1, n_corridors)]
    bottlenecks = list(merges) + [int(rng.choice(f[len(f) // 2 :])) for f in feeders]
    if not bottlenecks:  # a single corridor: one bottleneck in its downstream half
        bottlenecks = [int(rng.integers(n_sensors // 2, n_sensors))]
    for b in bottlenecks:
        w_am = rng.uniform(0.4, 0.8)
        d_b = demand(w_am, 1.2 - w_am)
        cap = rng.uniform(0.55, 0.75)
        excess = (d_b - cap) * dt_h
        sources.append((b, _queue(excess, 6.0, 3.0 * dt_h, 8.0), rng.uniform(0.55, 0.75)))
    n_inc = rng.poisson(incident_rate_per_day * days)
    for _ in range(n_inc):
        s = int(rng.integers(0, n_sensors))
        t0 = int(rng.integers(0, n_time))
        dur = max(1, round((10 + rng.exponential(30)) / step_minutes))
        sev = rng.uniform(0.4, 0.8)
        excess = np.zeros(n_time)
        excess[t0 : t0 + dur] = sev * dt_h
        sources.append((s, _queue(excess, 4.0, 3.0 * dt_h, 8.0), sev))

    # congestion, with stop-and-go waves travelling upstream from each source
    t_h = np.arange(n_time) * dt_h
    period_steps = 30.0 / step_minutes
    r, theta = 0.9, 2 * np.pi / period_steps
    congestion = np.zeros((n_time, n_sensors))
    for s, length, sev in sources:
        affected = np.flatnonzero(np.isfinite(d_up[:, s]) & (d_up[:, s] <= length.max() + 1.0))
        if length.max() <= 0 or affected.size == 0:
            continue
        z = _ar2(r, theta, rng.standard_normal(n_time))
        z /= z.std()
        dist = d_up[affected, s]
        delayed = np.stack([np.interp(t_h - dd / wave_speed_kmh, t_h, z) for dd in dist], 1)
        occupied = 1.0 / (1.0 + np.exp(-(length[:, None] - dist[None, :]) / 0.25))
        occupied = np.where(length[:, None] > 0, occupied, 0.0)
        c = sev * occupied * (1.0 + 0.3 * delayed)
        congestion[:, affected] = np.maximum(congestion[:, affected], c)
    congestion = np.clip(congestion, 0.0, 0.92)

    drift = _ou(rng, n_time, dt_h, 1.0, 1.5, width=n_sensors)
    speed = (
        free[None, :] * (1 - 0.08 * d_mean[:, None]) * (1 - congestion)
        + drift
        + rng.normal(0.0, noise_mph, (n_time, n_sensors))
    )
    speed = np.clip(speed, 3.0, 80.0).astype(np.float32)

    # adjacency: Gaussian kernel of the (undirected) road distance
    edges_i, edges_j, w = [], [], []
    for s in range(n_sensors):
        nxt = downstream[s]
        if nxt >= 0:
            edges_i.append(s)
            edges_j.append(nxt)
            w.append(d_up[s, nxt])
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import shortest_path

    graph = csr_matrix((w, (edges_i, edges_j)), shape=(n_sensors, n_sensors))
    road = shortest_path(graph, directed=False)
    adj = np.exp(-((road / kernel_km) ** 2))
    adj[adj < kernel_threshold] = 0.0
    np.fill_diagonal(adj, 1.0)

    ids = np.array([f"S{k:03d}" for k in range(n_sensors)])
    lat = center[0] + xy[:, 1] / KM_PER_DEG
    lon = center[1] + xy[:, 0] / (KM_PER_DEG * np.cos(np.deg2rad(center[0])))
    ds = xr.Dataset(
        {
            "speed": (
                (TIME, NODE),
                speed,
                {"units": "mph", "long_name": "traffic speed (synthetic)"},
            ),
            ADJACENCY: (
                (NODE, NODE_J),
                adj.astype(np.float32),
                {"units": "1", "long_name": "Gaussian kernel of road distance"},
            ),
        },
        coords={
            TIME: time,
            NODE: ids,
            NODE_J: ids,
            LAT: (NODE, lat, {"units": "degrees_north"}),
            LON: (NODE, lon, {"units": "degrees_east"}),
            "corridor": (NODE, corridor),
            "position_km": (NODE, position, {"units": "km"}),
        },
        attrs={
            "title": "synthetic-traffic: speeds on a road network with queues and incidents",
            "source": "forecast.data.synthetic.synthetic_traffic",
            "seed": int(seed),
            "bottlenecks": " ".join(ids[bottlenecks]),
        },
    )
    return ds
