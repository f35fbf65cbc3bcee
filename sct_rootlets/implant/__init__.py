"""Generated rootlets drawn into real scans: real anatomy around them, exact labels on them.

Rendered volumes (sct_rootlets.synth) teach rootlet shape but not the neck a real scan shows; a few real scans
show the neck but have no rootlet labels. Here each real T2w scan with a cord mask and two vertebral landmarks
(C2 and T2 body centres) gets its own faint rootlets removed from the CSF and generated ones drawn in, placed per
level by the PAM50 template scaled between the landmarks: `canal` finds the CSF and cleans it, `bands` says where
each level's rootlets run, `draw` puts them in and writes the training cases.
"""
