"""Who may attach (claims 40-62): authenticated hellos, visitors, certificates, DHCP proxy.

Modules: ``hello_auth`` (AODV extensions as scapy layers), ``credentials`` (HMAC,
certificate and signature checks, replay guard), ``policy`` (IPFilterRule -> nftables per
node at the sink), ``sink`` (the sink's attach logic: DIAMETER to the MSM, routes,
filters, counters), ``node`` (the node's side: build hellos, check the sink, install
routes), ``dhcp`` (DHCP hello: option codec and server), ``config``, ``__main__``.
"""
