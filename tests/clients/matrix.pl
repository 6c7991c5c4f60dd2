# The client matrix's Perl clients, Cache::Memcached and Cache::Memcached::Fast (Debian): the checks of README.md.
# Usage: perl matrix.pl plain|fast PORT   Prints `ok NAME` / `FAIL NAME: why` per check; exits 1 when any failed.
use strict;
use warnings;

my ($which, $port) = @ARGV;
my $addr = "127.0.0.1:$port";
my $m;
if ($which eq 'fast') {
    require Cache::Memcached::Fast;
    $m = Cache::Memcached::Fast->new({ servers => [$addr], io_timeout => 5 });
} else {
    require Cache::Memcached;
    $m = Cache::Memcached->new({ servers => [$addr] });
}
my @failed;

sub check {
    my ($name, $fn) = @_;
    if (eval { $fn->(); 1 }) { print "ok $name\n" }
    else { push @failed, $name; my $e = $@; chomp $e; print "FAIL $name: $e\n" }
}
sub eq_ {
    my ($got, $want, $what) = @_;
    my ($g, $w) = map { defined $_ ? $_ : 'undef' } ($got, $want);
    die "$what: got $g, want $w\n" unless $g eq $w;
}

$m->flush_all;
check('set_get', sub {
    $m->set('mx:k', 'hello') or die "set failed\n";
    eq_(scalar($m->get('mx:k')), 'hello', 'get');
});
check('get_multi', sub {
    my @keys = map { "mx:m$_" } 0 .. 39;
    $m->set($_, "v$_") for @keys;
    my $got = $m->get_multi(@keys);
    eq_(scalar(keys %$got), 40, 'keys returned');
    eq_($got->{$_}, "v$_", "value of $_") for @keys;
});
if ($which eq 'fast') {
    check('cas_unique_across_keys', sub {
        $m->set('mx:a', '1');
        $m->set('mx:b', '1');
        my $got = $m->gets_multi('mx:a', 'mx:b');
        die "the two keys share the CAS unique $got->{'mx:a'}[0]\n" if $got->{'mx:a'}[0] == $got->{'mx:b'}[0];
    });
    check('cas_round_trip', sub {
        $m->set('mx:c', 'old');
        my $u = $m->gets('mx:c')->[0];
        eq_($m->cas('mx:c', $u, 'new') ? 1 : 0, 1, 'cas with the current unique');
        eq_($m->cas('mx:c', $u, 'again') ? 1 : 0, 0, 'cas with a stale unique');
        eq_(scalar($m->get('mx:c')), 'new', 'value after cas');
    });
}
check('counter', sub {
    $m->set('mx:n', '10');
    eq_($m->incr('mx:n', 5), 15, 'incr');
    eq_($m->decr('mx:n', 3), 12, 'decr');
});
check('add_delete', sub {
    $m->set('mx:d', 'x');
    eq_($m->add('mx:d', 'y') ? 1 : 0, 0, 'add of an existing key');
    eq_($m->delete('mx:d') ? 1 : 0, 1, 'delete');
    eq_(scalar($m->get('mx:d')), undef, 'get after delete');
    eq_($m->add('mx:d', 'z') ? 1 : 0, 1, 'add after delete');
});
check('flush_all', sub {
    my @keys = map { "mx:f$_" } 0 .. 39;
    $m->set($_, 'x') for @keys;
    $m->flush_all;
    eq_(scalar(keys %{ $m->get_multi(@keys) }), 0, 'keys left after flush_all');
});
if ($which eq 'fast') {
    check('version', sub {
        my $v = $m->server_versions->{$addr};
        die "version " . (defined $v ? $v : 'undef') . " does not start with a digit\n" unless defined $v && $v =~ /^\d/;
    });
}
exit(@failed ? 1 : 0);
