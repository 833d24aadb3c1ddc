"""The container image every pipeline step and the model server run in: defined here only.

``make image`` and the manifests read this value (``python -m skewless.image``), so a release
changes one line.
"""

IMAGE = "ghcr.io/skewless/skewless:0.1.0"

if __name__ == "__main__":
    print(IMAGE)
