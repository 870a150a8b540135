"""Mobile service manager (MSM): portal, sign-on, DNS and CA of the workgroup system.

The MSM is the one place where M-VPNs, users and extranet workgroups are kept
(claims 5, 13, 20, 21); SGs and mobile nodes learn the workgroup state from it
over HTTP, names from its DNS server and certificates from its CA.
"""
