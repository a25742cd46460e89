#!/usr/bin/perl
# notify_listener.pl SOCKET LOG STOP_FILE STATUS_FILE
#
# Plays systemd's side of sd_notify(3) for tests/systemd/notify.sh: binds a
# datagram socket at SOCKET and appends one line per message to LOG:
#   MILLISECONDS STATUS_FILE_EXISTS FIELD|FIELD|...
# (the message's newline-separated fields joined by '|'; STATUS_FILE_EXISTS
# is 1 when STATUS_FILE existed as the message arrived). Exits once STOP_FILE
# exists (looked at every 100 ms).
use strict;
use warnings;
use IO::Socket::UNIX;
use Socket;
use Time::HiRes qw(time);

my ($path, $log, $stop, $status) = @ARGV;
die "usage: notify_listener.pl SOCKET LOG STOP_FILE STATUS_FILE\n" unless defined $status;
unlink $path;
my $socket = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $path)
    or die "cannot bind $path: $!\n";
open(my $out, '>>', $log) or die "$log: $!\n";
$out->autoflush(1);
my $readable = '';
vec($readable, fileno($socket), 1) = 1;
until (-e $stop) {
    next unless select(my $ready = $readable, undef, undef, 0.1) > 0;
    my $message;
    defined($socket->recv($message, 65536)) or next;
    my $ms = int(time() * 1000);
    my $exists = -e $status ? 1 : 0;
    $message =~ s/\n+\z//;
    $message =~ s/\n/|/g;
    print $out "$ms $exists $message\n";
}
unlink $path;
