"""Every benchmark in one place, each printing its figures and writing them as JSON: `atelier bench
world` (the training stream), `train` (training throughput and MFU next to diffusers' DiT),
`generate` (sampling time and the image suite), `serve` (the API server under load), and the
memory-layer capacity table (`python -m atelier.bench.memory_capacity`). This floor sits above the
server, whose benchmark starts one."""
