"""AODV (RFC 3561) mobility-routing agent with the patent's handover, weighted ring search
and long-session extensions. Run: python3 -m testbed.aodv --config FILE"""
