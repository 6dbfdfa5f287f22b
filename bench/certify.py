"""What a certified answer costs: seconds per certified photo for n = 100, 1,000 and 10,000 noise samples (plus the
n0 = 100 that choose the class), against one plain prediction of the same model in the same run.

    python bench/certify.py [--model robust] [--n 100,1000,10000] [--rounds 1] [--sigma S] [--batch 100]

Each round times, in turn, one plain ``model.predict`` (the median of 20) and one CERTIFY per n on the same photo
(huskyai.inference.certify: the photo decoded and cropped once, then the noisy copies in batches through the
model's ONNX Runtime engine); each figure is the median over the rounds. The ratio divides a certified answer's
time by a plain prediction's; "per sample" divides it by the n + n0 noisy copies, to show what the noise, the
batching and the statistics add to each engine call (a plain prediction also decodes and crops its photo, which
CERTIFY does once). A model not trained under noise is certified with ``--sigma`` (the cost does not depend on
what the weights learnt).
"""

from __future__ import annotations

import argparse
import os
import statistics

import huskyai
from common import PHOTO, median_ms
from huskyai.inference.certify import DEFAULT_BATCH, DEFAULT_N0, card_sigma, certify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="robust", help="a shipped model's name or an export folder")
    parser.add_argument("--sha256", help="pin the model's card (for a folder that is not signed here)")
    parser.add_argument("--trust-unsigned", action="store_true")
    parser.add_argument("--n", default="100,1000,10000", help="the n to time, comma-separated")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sigma", type=float, help="the noise, for a model whose card has no noise_sigma")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="noisy copies per engine call")
    parser.add_argument("--photo", default=str(PHOTO))
    args = parser.parse_args()

    model = huskyai.load(args.model, sha256=args.sha256, trust_unsigned=args.trust_unsigned)
    sigma = args.sigma if args.sigma is not None else card_sigma(model.card)
    data = open(args.photo, "rb").read()
    ns = [int(n) for n in args.n.split(",")]
    print(f"model {model.export_dir} ({model.card['arch']}, {model.size} px, sigma {sigma:g}, engine "
          f"{model.engine.name}), photo {os.path.basename(args.photo)}, n0 = {DEFAULT_N0}, batch {args.batch}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    plain_ms: list[float] = []
    seconds: dict[int, list[float]] = {n: [] for n in ns}
    for _ in range(args.rounds):
        plain_ms.append(median_ms(lambda: model.predict(data), repeat=20))
        for n in ns:
            cert = certify(model, data, sigma, n=n, batch_size=args.batch, seed=0)
            seconds[n].append(cert.seconds)
    plain = statistics.median(plain_ms)
    print(f"\none plain prediction: {plain:.1f} ms\n")
    print(f"{'n':>7}  {'s per certified answer':>22}  {'x plain predict':>15}  {'ms per sample':>13}")
    for n in ns:
        s = statistics.median(seconds[n])
        print(f"{n:>7}  {s:>22.2f}  {s * 1000 / plain:>15.0f}  {s * 1000 / (n + DEFAULT_N0):>13.1f}")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
