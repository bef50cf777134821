"""Train the verifier, the railcar network's second look at each candidate
(``make train-verifier``; needs PyTorch, a development tool only: the
plugin runs the weights with numpy, plugin/core/verifier.py).

The training scenes are the railcar network's (train_network.py; never the
held-out suite of bench_accuracy.py nor the demo site). On each scene the
shipped network proposes candidates at a low heat threshold; a candidate
centred on a car (within 30 % of its length from the centre) is that car,
by type; one elsewhere (a shadow, a container, a truck, the gap between two
cars) is "none"; one inside a car but off its centre is left out (a second
peak on a long car: the verifier cannot tell it from the car's own centre).
Cars the network missed are added at their true centres, so the verifier
sees every car type, and the cars' shadows are added as "none".

The side-unknown verifier (railcar_verifier.npz): --fresh 300 --steps 10000
--network H.npz, the network of 0.3.0-0.3.7 (train_network.py; on 2 cores
about 20 minutes to draw the fresh scenes and collect candidates, 13 to
train).
After retraining the network, train the verifier on its candidates
(--network; add --coarse as the network had it). Tried and not shipped:
--coarse 80 --fresh-coarse 60 with either network (README, Accuracy).
The coarse-imagery verifier (railcar_verifier_coarse.npz): --fresh 300
--sparse 100 --fresh-sparse 150 --network railcar_net_coarse.npz --steps 8000
--out railcar_verifier_coarse.npz.
--beside-shadows also teaches that a car's own shadow on the next track is
no car; with the lone-car network it turned those shadows away but took
dark cars beside bright ones for shadows (README, Quiet yards). Telling it
the side the shadow lies on (--sun-side) cures that: the two shadow-side
verifiers shipped in 0.3.8 are --fresh 300 --fresh-sparse 150 --network
railcar_net.npz --beside-shadows --sun-side --steps 10000 --out
railcar_verifier_shadow_side.npz, and the same with --along-either-way
--out railcar_verifier_shadow_side_along.npz.
The coarse-imagery pair (0.3.10): --fresh 300 --sparse 100 --fresh-sparse
150 --network railcar_net_coarse.npz --beside-shadows --sun-side --steps
8000 --out railcar_verifier_coarse_shadow_side.npz (17 min to collect the
candidates, 26 to train on one thread), and the same with
--along-either-way --out railcar_verifier_coarse_shadow_side_along.npz.
Tried and not shipped: that pair with --any-view (README, Shadows at 0.7-1 m).
"""
import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from train_network import (SHADOW, coarse_low_sun_spec, few_track_spec, random_spec,  # noqa: E402
                           save_layers, scene_arrays, sparse_yard_spec,
                           training_specs)

from railcar_counter.plugin.core import synthetic  # noqa: E402
from railcar_counter.plugin.core.cars import candidates  # noqa: E402
from railcar_counter.plugin.core.shadows import (ALONG_SHADOW, across_axis,  # noqa: E402
                                                 shadow_direction)
from railcar_counter.plugin.core.network import INPUT_GSD, TYPES, RailcarNet  # noqa: E402
from railcar_counter.plugin.core.network import WEIGHTS as NETWORK_WEIGHTS  # noqa: E402
from railcar_counter.plugin.core.verifier import (CLASSES, CONVS, FLAT, HIDDEN, WEIGHTS,  # noqa: E402
                                                   strips)

CANDIDATE_HEAT = 0.1     # well below any threshold the sensitivity gives
NONE = 0


class VerifierNet(nn.Module):
    """The same layers as verifier.CONVS, in PyTorch."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleDict({name: nn.Conv2d(cin, cout, 3, padding=1)
                                    for name, cin, cout in CONVS})
        self.fc1 = nn.Linear(FLAT, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, len(CLASSES))

    def forward(self, x):
        for conv in self.convs.values():
            x = F.max_pool2d(F.relu(conv(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def label_candidates(cars_found, cars, beside_shadows=False):
    """Samples (x, y, theta, class) from the network's candidates and the
    true cars of one scene (pixel frame, 0.5 m). ``beside_shadows``: the
    shadows added as "none" include those beside their own car (the
    default takes only shadows half a car length or more from any car's
    centre, which leaves out nearly every shadow next to its car)."""
    real = cars[cars[:, 6] == 0]
    hidden = cars[(cars[:, 6] != 0) & (cars[:, 6] != SHADOW)]
    taken = np.zeros(len(real), bool)
    samples = []
    for c in sorted(cars_found, key=lambda c: -c.score):
        label = NONE
        for group, is_real in ((real, True), (hidden, False)):
            if not len(group):
                continue
            du, dv, half_l, half_w = _car_frame(c.x, c.y, group)
            inside = (du < half_l) & (dv < half_w + 2)
            centred = (du < 0.6 * half_l) & (dv < half_w + 2)
            if not is_real:
                if inside.any():
                    label = None             # under a cloud: nobody can tell
                break
            free = centred & ~taken
            if free.any():
                j = int(np.argmin(np.where(free, du, np.inf)))
                taken[j] = True
                label = 1 + int(group[j, 5])
                break
            if inside.any():
                label = None
                break
        if label is not None:
            samples.append((c.x, c.y, c.theta, label))
    for j in np.nonzero(~taken)[0]:
        samples.append((real[j, 0], real[j, 1], real[j, 2], 1 + int(real[j, 5])))
    shadows = cars[cars[:, 6] == SHADOW]
    if beside_shadows:
        # shadows clear of every car, a car's own shadow on the next track
        # included (it looks like a second, dark car); not those that half
        # cover a car: a strip centred there is neither clearly a car nor not
        bodies = cars[cars[:, 6] != SHADOW]
        along, across = (m / INPUT_GSD for m in SHADOW_CLEAR_M)
        for row in shadows[::2]:
            du, dv, half_l, half_w = _car_frame(row[0], row[1], bodies)
            if not ((du < half_l + along) & (dv < half_w + across)).any():
                samples.append((row[0], row[1], row[2], NONE))
        return samples
    # shadows away from any car
    for row in shadows[::3]:
        if len(real):
            d = np.hypot(real[:, 0] - row[0], real[:, 1] - row[1])
            if (d < real[:, 3] / INPUT_GSD / 2 + 2).any():
                continue
        samples.append((row[0], row[1], row[2], NONE))
    return samples


SHADOW_CLEAR_M = (2.0, 3.0)   # along, across: how far a shadow sample keeps off a car


def _car_frame(x, y, group):
    """Where (x, y) lies from each car of ``group`` (rows of the cars
    array), in pixels: its distance along and across the car's axis, and
    the car's half length and half width."""
    dx, dy = x - group[:, 0], y - group[:, 1]
    du = np.abs(dx * np.cos(group[:, 2]) + dy * np.sin(group[:, 2]))
    dv = np.abs(-dx * np.sin(group[:, 2]) + dy * np.cos(group[:, 2]))
    return du, dv, group[:, 3] / INPUT_GSD / 2, group[:, 4] / INPUT_GSD / 2


def collect(specs, cache, network, beside_shadows=False):
    scenes, samples = [], []
    t0 = time.time()
    for k, spec in enumerate(specs):
        x, valid, cars = scene_arrays(*synthetic.cached_scene(spec, cache))
        found = candidates(x, valid, CANDIDATE_HEAT, network)
        for s in label_candidates(found, cars, beside_shadows):
            samples.append((len(scenes),) + tuple(s))
        scenes.append(x)
        if k % 20 == 0:
            print("scene %d/%d, %d samples (%.0f s)" % (k, len(specs), len(samples), time.time() - t0),
                  flush=True)
    return scenes, np.array(samples, np.float64)


def sample_batch(scenes, samples, rng, batch, shadows=None, along=0.0):
    """A batch of strips and their classes. With ``shadows`` (each scene's
    shadow_direction) every strip is turned so that shadows fall towards
    its last rows, and mirrored only along its axis; one whose shadow lies
    less than ``along`` across it (shadows.ALONG_SHADOW), either way."""
    rows = samples[rng.integers(0, len(samples), batch)]
    xs = []
    for row in rows:
        k, x, y, th = int(row[0]), row[1], row[2], row[3]
        th += rng.normal(0, math.radians(2.5))
        x += rng.normal(0, 0.6)
        y += rng.normal(0, 0.6)
        s = strips(scenes[k], [x], [y], [th])[0]
        if shadows is not None:
            across = np.dot(shadows[k], across_axis(th))
            # a shadow cast along its car says nothing of a side (--along-either-way)
            if across < 0 if abs(across) >= along else rng.random() < 0.5:
                s = s[:, ::-1, :]
            if rng.random() < 0.5:      # mirror along the axis
                s = s[:, :, ::-1]
        else:
            if rng.random() < 0.5:      # end for end
                s = s[:, ::-1, ::-1]
            if rng.random() < 0.5:      # mirror across the axis
                s = s[:, ::-1, :]
        s = s.copy()
        s[0] = s[0] * rng.uniform(0.7, 1.3) + rng.uniform(-0.12, 0.12)
        s += rng.normal(0, rng.uniform(0, 0.03), s.shape).astype(np.float32)
        xs.append(s)
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(rows[:, 4].astype(np.int64))


def default_samples_path(args):
    """Candidates are kept per scene set and per network: they are that
    network's candidates on those scenes."""
    network = os.path.splitext(os.path.basename(args.network))[0]
    return os.path.join(tempfile.gettempdir(), "railcar_verifier_samples_%d_%d_%d_%d_%d_%s%s%s.npz"
                        % (args.fresh, args.coarse, args.fresh_coarse, args.sparse, args.fresh_sparse,
                           network, "_beside" if args.beside_shadows else "",
                           "_anyview" if args.any_view else ""))


def export(model, path):
    save_layers({**model.convs, "fc1": model.fc1, "fc2": model.fc2}, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--max-lr", type=float, default=2e-3)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "railcar_train"))
    ap.add_argument("--fresh", type=int, default=0,
                    help="also draw this many scenes the network never trained on (a third "
                         "of one to three tracks): its candidates there are the kind it "
                         "makes on new imagery")
    ap.add_argument("--coarse", type=int, default=0,
                    help="the railcar network's coarse training scenes (its --coarse)")
    ap.add_argument("--fresh-coarse", type=int, default=0,
                    help="also draw this many coarse low-sun yards the network never trained on")
    ap.add_argument("--sparse", type=int, default=0,
                    help="the railcar network's quiet yards (its --sparse)")
    ap.add_argument("--fresh-sparse", type=int, default=0,
                    help="also draw this many quiet yards the network never trained on (up to "
                         "a dozen cars, mostly alone, some with none)")
    ap.add_argument("--network", default=NETWORK_WEIGHTS,
                    help="railcar network weights whose candidates the verifier learns from "
                         "(default: the shipped ones); train the two as a pair")
    ap.add_argument("--samples", default=None,
                    help="candidates collected once, reused by later runs (default: in the "
                         "system's temporary folder)")
    ap.add_argument("--beside-shadows", action="store_true",
                    help="also teach that a car's own shadow on the next track is no car "
                         "(alone it took dark cars beside bright ones for shadows; shipped "
                         "with --sun-side: README, Quiet yards)")
    ap.add_argument("--sun-side", action="store_true",
                    help="turn every strip so that shadows fall on the same side (each scene's "
                         "sun azimuth): a shadow-side verifier, which counts once the image's "
                         "cars have told that side (plugin/core/shadows.py)")
    ap.add_argument("--along-either-way", action="store_true",
                    help="with --sun-side, turn strips whose shadow falls along the car "
                         "(shadows.ALONG_SHADOW) either way at random: the image's estimate "
                         "cannot see a side there")
    ap.add_argument("--any-view", action="store_true",
                    help="see three scenes in five 5-25 degrees off nadir from a random side "
                         "(train_network.seen_from_any_side)")
    ap.add_argument("--out", default=WEIGHTS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0,
                    help="another seed measures how much a result owes to chance")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    # the railcar network's training scenes (its shipped recipe's last run)
    view = args.any_view
    specs = training_specs(np.random.default_rng(0), 100, 260, 24, 60, args.coarse, args.sparse, view)
    fresh_rng = np.random.default_rng(2)
    for k in range(args.fresh):
        spec = (few_track_spec(fresh_rng, 8000 + k, view) if k % 3 == 2
                else random_spec(fresh_rng, 1000 + k, view))
        specs.append(spec)
    fresh_coarse_rng = np.random.default_rng(3)
    specs += [coarse_low_sun_spec(fresh_coarse_rng, 9000 + k) for k in range(args.fresh_coarse)]
    sparse_rng = np.random.default_rng(4)
    specs += [sparse_yard_spec(sparse_rng, 9500 + k, view) for k in range(args.fresh_sparse)]
    shadows = [shadow_direction(spec.sun_azimuth) for spec in specs] if args.sun_side else None
    args.samples = args.samples or default_samples_path(args)
    if os.path.exists(args.samples):
        with np.load(args.samples) as d:
            samples = d["samples"]
        scenes = [scene_arrays(*synthetic.cached_scene(spec, args.cache))[0] for spec in specs]
    else:
        scenes, samples = collect(specs, args.cache, RailcarNet(args.network), args.beside_shadows)
        np.savez(args.samples, samples=samples)
    counts = np.bincount(samples[:, 4].astype(int), minlength=len(CLASSES))
    print("samples:", dict(zip(CLASSES, counts.tolist())), flush=True)
    w = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** 0.5, 0.0)
    weight = torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)
    rng = np.random.default_rng(args.seed)
    model = VerifierNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.max_lr, total_steps=args.steps,
                                                pct_start=0.1)
    t0 = time.time()
    run = None
    for step in range(1, args.steps + 1):
        x, y = sample_batch(scenes, samples, rng, args.batch, shadows,
                            ALONG_SHADOW if args.along_either_way else 0.0)
        out = model(x)
        loss = F.cross_entropy(out, y, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        acc = float((out.argmax(1) == y).float().mean())
        car_ok = float(((out.argmax(1) == NONE) == (y == NONE)).float().mean())
        run = np.array([loss.item(), acc, car_ok]) if run is None else 0.98 * run + 0.02 * np.array(
            [loss.item(), acc, car_ok])
        if step % 200 == 0:
            print("step %5d  loss %.3f  class %.3f  car/none %.3f  (%.0f s)" % (step, *run, time.time() - t0),
                  flush=True)
            export(model, args.out)
    export(model, args.out)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
