"""Lead-time-aware models: forecast layouts, the condition's labels, training across leads,
downscaling labelled (member, time, lead_time, y, x) with a valid_time, and what is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xcorrdiff
from xcorrdiff.config import NetworkConfig
from xcorrdiff.data.lead_time import flatten_leads, lead_labels, lead_times_of
from xcorrdiff.diffusion import build_condition, crop_condition, denoise
from xcorrdiff.inference.api import downscale, downscale_to_zarr, member_seed
from xcorrdiff.nn import EDMPrecondSuperResolution
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.tutorial import make_synthetic

LEADS = pd.to_timedelta([0, 6, 12], unit="h")


def forecasts(n_times: int = 6) -> tuple[xr.Dataset, xr.Dataset]:
    """Inputs identical across leads; the truth of lead l adds l/6 h kelvin to t2m."""
    lr, hr = make_synthetic(n_times=n_times, hr_shape=(16, 16), factor=4, seed=1)
    lead = xr.DataArray(LEADS, dims="lead_time", name="lead_time")
    lr_f = xr.concat([lr] * 3, dim=lead).transpose("time", "lead_time", ...)
    hr_f = xr.concat([hr] * 3, dim=lead).transpose("time", "lead_time", ...)
    shift = xr.DataArray([0.0, 1.0, 2.0], dims="lead_time", coords={"lead_time": LEADS})
    hr_f["t2m"] = (hr_f["t2m"] + shift).assign_attrs(hr["t2m"].attrs)
    return lr_f, hr_f


def test_flatten_leads_orders_samples_and_labels() -> None:
    lr, _ = forecasts(2)
    shuffled = lr.isel(lead_time=[2, 0, 1])
    assert lead_times_of(shuffled) == tuple(LEADS.to_numpy())
    flat, labels = flatten_leads(shuffled, lead_times_of(shuffled))
    assert list(labels) == [0, 1, 2, 0, 1, 2]
    expected = (lr.time.values[:, None] + LEADS.to_numpy()[None, :]).reshape(-1)
    np.testing.assert_array_equal(flat.time.values, expected)
    np.testing.assert_array_equal(flat.t2m.values[4], lr.t2m.isel(time=1, lead_time=1).values)
    with pytest.raises(
        ValueError, match=r"lead_time values \['1 days 00:00:00'\] are not lead times"
    ):
        lead_labels(np.array([np.timedelta64(1, "D")]), LEADS.to_numpy())
    with pytest.raises(ValueError, match="without a timedelta64 coordinate"):
        lead_times_of(lr.assign_coords(lead_time=[1, 2, 3]))


def test_the_condition_carries_labels_to_whole_domains_and_patches() -> None:
    torch.manual_seed(0)
    net = EDMPrecondSuperResolution(
        img_resolution=16, img_in_channels=3 + 4 + 2, img_out_channels=2,
        model_type="SongUNetPosLtEmbd", model_channels=8, channel_mult=[1, 2],
        attn_resolutions=[], num_blocks=1, lead_time_channels=2, lead_time_steps=3,
    ).eval()  # fmt: skip
    g = torch.Generator().manual_seed(1)
    inputs, x = torch.randn(2, 3, 16, 16, generator=g), torch.randn(2, 2, 16, 16, generator=g)
    lead, sigma = torch.tensor([0, 2]), torch.tensor([0.7, 0.7])
    with torch.no_grad():
        whole = denoise(net, x, sigma, build_condition(inputs, lead_time=lead))
        torch.testing.assert_close(whole, net(x, inputs, sigma, lead_time_label=lead))
        offsets = torch.tensor([[[2, 5]], [[8, 0]]])  # each sample's own patch corner
        rows = crop_condition(build_condition(inputs, lead_time=lead), offsets, (8, 8),
                              global_inputs=False)  # fmt: skip
        xp = torch.stack(
            [x[b, :, y0 : y0 + 8, x0 : x0 + 8] for b, ((y0, x0),) in enumerate(offsets)]
        )
        patched = denoise(net, xp, sigma, rows)
        for b, ((y0, x0),) in enumerate(offsets.tolist()):
            index = torch.stack(torch.meshgrid(torch.arange(y0, y0 + 8), torch.arange(x0, x0 + 8),
                                               indexing="ij"))[None]  # fmt: skip
            one = net(xp[b : b + 1], inputs[b : b + 1, :, y0 : y0 + 8, x0 : x0 + 8],
                      sigma[:1], global_index=index, lead_time_label=lead[b : b + 1])  # fmt: skip
            torch.testing.assert_close(patched[b : b + 1], one)


@pytest.fixture(scope="module")
def model() -> xcorrdiff.CorrDiffModel:
    lr, hr = forecasts()
    config = TrainConfig(
        regression=NetworkConfig(model_channels=8, channel_mult=(1, 2), embedding_type="zero"),
        diffusion=NetworkConfig(model_channels=8, channel_mult=(1, 2)),
        batch_size=2, patch_shape=(8, 8), regression_duration=4, diffusion_duration=4,
        validation_fraction=0, lead_time_channels=3,
    )  # fmt: skip
    return lr.corrdiff.fit(hr, config=config, output_variables=["t2m"], progress=False)


def test_a_model_trained_on_forecasts_is_lead_time_aware(
    model: xcorrdiff.CorrDiffModel, tmp_path: Path
) -> None:
    assert model.lead_times == tuple(LEADS.to_numpy())
    for net in (model.regression, model.diffusion):
        assert type(net.model).__name__ == "SongUNetPosLtEmbd"  # type: ignore[union-attr]
        assert net.model.lead_time_steps == 3 and net.model.lead_time_channels == 3  # type: ignore[union-attr]
    loaded = xcorrdiff.load_model(model.save(tmp_path / "m"))
    assert loaded.lead_times == model.lead_times
    with pytest.raises(ValueError, match=r"lead times \(the generic package has no field"):
        model.save(tmp_path / "pkg", format="earth2studio")
    lr, _ = forecasts(2)
    xr.testing.assert_equal(loaded.regression_mean(lr), model.regression_mean(lr))


def test_downscaling_forecasts_is_labelled_by_lead(
    model: xcorrdiff.CorrDiffModel, tmp_path: Path
) -> None:
    lr, _ = forecasts(2)
    kw = {"num_steps": 2, "device": "cpu", "seed": 4}
    ens = downscale(lr, model, 2, **kw)
    assert ens["t2m"].dims == ("member", "time", "lead_time", "y", "x")
    np.testing.assert_array_equal(ens.time.values, lr.time.values)
    np.testing.assert_array_equal(
        ens.valid_time.values, lr.time.values[:, None] + LEADS.to_numpy()[None, :]
    )
    # One lead alone gives the same members (its own label and random streams).
    alone = downscale(lr.isel(lead_time=[1]), model, 2, **kw)
    xr.testing.assert_allclose(alone.isel(lead_time=0), ens.isel(lead_time=1), rtol=1e-5)
    lazy = downscale(lr.chunk(time=1), model, 2, **kw)
    xr.testing.assert_allclose(lazy.compute(), ens, rtol=1e-4, atol=1e-4)
    downscale_to_zarr(lr, tmp_path / "f.zarr", model, 2, **kw)
    stored = xr.open_zarr(tmp_path / "f.zarr", consolidated=False).load()
    xr.testing.assert_allclose(stored[["t2m"]], ens[["t2m"]], rtol=1e-4, atol=1e-4)
    assert member_seed(0, 5, 1, 0) != member_seed(0, 5, 1, 1) != member_seed(0, 5, 1)


def test_grib_style_init_time_and_step_are_understood(model: xcorrdiff.CorrDiffModel) -> None:
    lr, _ = forecasts(2)
    grib = lr.rename(time="init_time", lead_time="step")
    ens = downscale(grib, model, 1, num_steps=2, device="cpu", seed=4)
    assert ens["t2m"].dims == ("member", "time", "lead_time", "y", "x")
    xr.testing.assert_allclose(ens, downscale(lr, model, 1, num_steps=2, device="cpu", seed=4))


def test_lead_time_misuse_is_refused(model: xcorrdiff.CorrDiffModel) -> None:
    lr, hr = forecasts(2)
    with pytest.raises(ValueError, match=r"lead_time values \['1 days 00:00:00', '1 days 06"):
        downscale(lr.assign_coords(lead_time=LEADS + pd.Timedelta(days=1)), model, 1)
    with pytest.raises(ValueError, match=r"the model is lead-time-aware .* no 'lead_time'"):
        downscale(lr.isel(lead_time=0, drop=True), model, 1)
    plain = xcorrdiff.load_model("demo")
    with pytest.raises(ValueError, match="the model is not lead-time-aware"):
        downscale(lr, plain, 1)
    with pytest.raises(ValueError, match=r"lr has lead times .* but hr has \[\]"):
        lr.corrdiff.fit(hr.isel(lead_time=0, drop=True), progress=False)


def test_lead_time_network_refuses_bad_labels_and_arguments() -> None:
    from xcorrdiff.nn import SongUNetPosLtEmbd

    kw = {"img_resolution": 8, "out_channels": 2, "model_channels": 8, "channel_mult": [1],
          "attn_resolutions": [], "num_blocks": 1}  # fmt: skip
    net = SongUNetPosLtEmbd(in_channels=2 + 4 + 2, lead_time_channels=2, lead_time_steps=3, **kw)
    x, noise = torch.zeros(2, 2, 8, 8), torch.zeros(2)
    with pytest.raises(ValueError, match="lead_time_label is required by SongUNetPosLtEmbd"):
        net(x, noise)
    with pytest.raises(ValueError, match=r"lead_time_label \[0, 3\] is out of range; expected "):
        net(x, noise, lead_time_label=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"lead_time_channels=0 is invalid"):
        SongUNetPosLtEmbd(in_channels=6, lead_time_channels=0, **kw)
    with pytest.raises(ValueError, match=r"prob_channels=\[5\] is invalid"):
        SongUNetPosLtEmbd(in_channels=8, lead_time_channels=2, prob_channels=[5], **kw)
    with pytest.raises(ValueError, match=r"in_channels 5 must include the 6 grid and lead-time"):
        SongUNetPosLtEmbd(in_channels=5, lead_time_channels=2, **kw)


def test_forecasts_without_an_initialisation_time_are_refused() -> None:
    lr, _ = forecasts(2)
    with pytest.raises(ValueError, match=r"'lead_time' dimension but no 'time' \(initialisation\)"):
        lead_times_of(lr.isel(time=0, drop=True))
