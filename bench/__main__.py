"""``python -m bench``: the list of maintained benchmarks."""
import bench

print(bench.__doc__)
