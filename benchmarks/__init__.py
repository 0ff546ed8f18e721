"""seqrec benchmarks: speed and accuracy figures, written as JSON plus a markdown table under results/."""
