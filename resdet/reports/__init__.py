"""Pictures and plots of runs: detections drawn on images, training curves."""
